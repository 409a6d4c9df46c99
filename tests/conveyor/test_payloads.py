"""The payload object store against a real nats-server: put, chunked reads, deletes."""

from __future__ import annotations

import os

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from conveyor import jetstream, payloads
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.config import CommonSettings
from conveyor.errors import Internal, NotFound

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(
    nats_connection: tuple[NATS, JetStreamContext], common: CommonSettings
) -> payloads.PayloadStore:
    _, js = nats_connection
    await jetstream.object_store(js, common)  # declared twice: idempotent
    return payloads.PayloadStore(await jetstream.object_store(js, common))


async def read(store: payloads.PayloadStore, reference: tasks_pb2.Payload) -> list[bytes]:
    return [chunk async for chunk in store.chunks(reference)]


async def test_a_payload_reads_back_in_chunks_identical(store: payloads.PayloadStore) -> None:
    data = os.urandom(3 * payloads.CHUNK_BYTES + 17)
    reference = await store.put(payloads.result_name("t1", 1), data)
    assert reference == payloads.describe(data, "t1/result/1")
    chunks = await read(store, reference)
    assert len(chunks) == 4
    assert b"".join(chunks) == data


async def test_a_reference_that_does_not_match_the_bytes_fails_the_read(
    store: payloads.PayloadStore,
) -> None:
    reference = await store.put("t1/result/1", b"abc" * 1000)
    reference.sha256 = "0" * 64
    with pytest.raises(Internal, match="do not match"):
        await read(store, reference)


async def test_deleting_a_tasks_payloads_removes_every_attempt(
    store: payloads.PayloadStore,
) -> None:
    first = await store.put(payloads.result_name("t1", 1), b"one")
    await store.put(payloads.result_name("t1", 3), b"three")
    kept = await store.put(payloads.result_name("t2", 1), b"other")
    assert await store.delete_task("t1", attempts=3) == 2
    with pytest.raises(NotFound):
        await read(store, first)
    assert b"".join(await read(store, kept)) == b"other"
    assert not await store.delete("t1/result/1")


def test_abridge_keeps_the_image_metadata_and_refers_to_the_whole() -> None:
    result = tasks_pb2.TaskResult(
        image_processing=tasks_pb2.ImageProcessingResult(image=b"x" * 5000, width=9)
    )
    reference = payloads.describe(result.SerializeToString(), "t1/result/1")
    slim = payloads.abridge(result, reference, limit=1024)
    assert slim.image_processing.width == 9 and slim.image_processing.image == b""
    assert slim.payload == reference
