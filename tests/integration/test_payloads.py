"""Large results: kept in the object store, read in chunks, and never a message a client
cannot receive (issue 17's reproduction among them)."""

from __future__ import annotations

import asyncio
import hashlib
import io
from pathlib import Path
from typing import Any

import grpc
import pytest
from nats.js.errors import ObjectNotFoundError
from PIL import Image

from conveyor import jsonlike, messages, payloads, subjects
from conveyor.api.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from conveyor.cli import main
from conveyor.client import AsyncClient, Client, custom_result
from conveyor.context import TaskContext
from conveyor.errors import FailedPrecondition, NonRetryable, NotFound
from conveyor.registry import Registry
from tests.conftest import System
from tests.support.helpers import png, wait_terminal

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
CLIENT_DEFAULT_LIMIT = 4 * MIB
"""What gRPC clients in most languages accept by default (grpc's own default here)."""


async def blob(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    return {"blob": "x" * int(payload["size"])}


async def measure(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    if ctx.attempt == 1:
        raise NonRetryable("the first run fails")
    return {"length": len(payload["text"])}


def blob_registry() -> Registry:
    registry = Registry()
    registry.task("blob", max_attempts=3)(blob)
    registry.task("measure", max_attempts=1)(measure)
    return registry


def blob_result(size: int) -> bytes:
    """The serialized TaskResult the blob handler makes."""
    custom = tasks_pb2.CustomTaskResult(json=jsonlike.dumps({"blob": "x" * size}))
    return tasks_pb2.TaskResult(custom=custom).SerializeToString()


def default_stub(system: System) -> tuple[grpc.aio.Channel, tasks_pb2_grpc.TaskServiceStub]:
    """A client with gRPC's default limits (4 MiB received), like Node, Go, Java, .NET."""
    assert system.gateway is not None
    channel = grpc.aio.insecure_channel(system.gateway.address)
    return channel, tasks_pb2_grpc.TaskServiceStub(channel)


async def submit(stub: tasks_pb2_grpc.TaskServiceStub, request: tasks_pb2.SubmitTaskRequest) -> str:
    response = await stub.SubmitTask(request)
    task_id: str = response.task.id
    return task_id


async def test_a_7_mb_text_result_reads_and_watches_within_default_limits(
    system: System,
) -> None:
    await system.start()
    text = ("Lorem ipsum dolor sit amet. " * 40_000)[:MIB]
    # Every transform of 1 MiB of text: a 7 MiB result (issue 17 had `upper` 16 times, which
    # the gateway now refuses as a repeated transform).
    every = [
        tasks_pb2.TEXT_TRANSFORM_UPPER,
        tasks_pb2.TEXT_TRANSFORM_LOWER,
        tasks_pb2.TEXT_TRANSFORM_TITLE,
        tasks_pb2.TEXT_TRANSFORM_REVERSE,
        tasks_pb2.TEXT_TRANSFORM_SLUG,
        tasks_pb2.TEXT_TRANSFORM_NORMALIZE_WHITESPACE,
        tasks_pb2.TEXT_TRANSFORM_STRIP_PUNCTUATION,
    ]
    request = tasks_pb2.SubmitTaskRequest(
        text_processing=tasks_pb2.TextProcessingInput(text=text, transforms=every)
    )
    channel, stub = default_stub(system)
    async with channel, AsyncClient(system.gateway.address) as client:  # type: ignore[union-attr]
        # Thirty watchers of unrelated tasks, on the same gateway, that must not notice.
        later = tasks_pb2.TaskOptions(delay={"seconds": 3600})
        others = [
            await submit(
                stub,
                tasks_pb2.SubmitTaskRequest(
                    text_processing=tasks_pb2.TextProcessingInput(text=f"other {n}"),
                    options=later,
                ),
            )
            for n in range(30)
        ]
        watchers = [stub.WatchTask(tasks_pb2.WatchTaskRequest(task_id=o)) for o in others]
        for watcher in watchers:
            first = await watcher.read()
            assert first.task.state == tasks_pb2.TASK_STATE_SCHEDULED

        task_id = await submit(stub, request)
        watch = stub.WatchTask(tasks_pb2.WatchTaskRequest(task_id=task_id))
        updates = [response.task async for response in watch]
        assert updates[-1].state == tasks_pb2.TASK_STATE_COMPLETED

        task = (await stub.GetTask(tasks_pb2.GetTaskRequest(task_id=task_id))).task
        assert task.state == tasks_pb2.TASK_STATE_COMPLETED
        assert task.ByteSize() < CLIENT_DEFAULT_LIMIT
        stats = task.result.text_processing
        assert stats.characters == MIB
        assert [t.transform for t in stats.transforms] == every
        reference = task.result.payload
        assert reference.size_bytes > CLIENT_DEFAULT_LIMIT
        assert reference.name == payloads.result_name(task_id, 1)

        complete = await client.result(task_id)
        outputs = {t.transform: t.text for t in complete.text_processing.transforms}
        assert outputs[tasks_pb2.TEXT_TRANSFORM_UPPER] == text.upper()
        assert outputs[tasks_pb2.TEXT_TRANSFORM_REVERSE] == text[::-1]
        assert complete.text_processing.characters == MIB
        assert not complete.HasField("payload")

        # The other watches are still open and still deliver.
        await stub.CancelTask(tasks_pb2.CancelTaskRequest(task_id=others[0]))
        assert (await watchers[0].read()).task.state == tasks_pb2.TASK_STATE_CANCELLED
        for watcher in watchers[1:]:
            assert not watcher.done()
            watcher.cancel()


async def test_a_20_mb_custom_result_completes_and_streams_back_identical(
    system: System,
) -> None:
    await system.start_store()
    await system.start_worker(blob_registry())
    await system.start_gateway()
    size = 20 * 1000 * 1000
    channel, stub = default_stub(system)
    async with channel, AsyncClient(system.gateway.address) as client:  # type: ignore[union-attr]
        task_id = await submit(
            stub,
            tasks_pb2.SubmitTaskRequest(
                custom=tasks_pb2.CustomTaskInput(type="blob", payload={"size": size})
            ),
        )
        task = await wait_terminal(stub, task_id)
        assert task.state == tasks_pb2.TASK_STATE_COMPLETED, task.error
        assert task.ByteSize() < CLIENT_DEFAULT_LIMIT
        assert task.result.WhichOneof("result") is None  # the whole result is too large
        expected = blob_result(size)
        assert task.result.payload.size_bytes == len(expected)
        assert task.result.payload.sha256 == hashlib.sha256(expected).hexdigest()

        chunks = [chunk async for chunk in client.payload(task_id)]
        assert len(chunks) > 1
        assert max(len(c) for c in chunks) <= payloads.CHUNK_BYTES
        assert b"".join(chunks) == expected

        listed = (await stub.ListTasks(tasks_pb2.ListTasksRequest())).tasks
        assert [t.id for t in listed] == [task_id]

    def read_synchronously() -> bytes:
        with Client(system.gateway.address) as sync:  # type: ignore[union-attr]
            return sync.result(task_id).SerializeToString()

    assert await asyncio.to_thread(read_synchronously) == expected


async def test_a_result_over_the_hard_limit_fails_at_once_naming_its_size(
    system: System,
) -> None:
    await system.start_store()
    await system.start_worker(blob_registry(), max_result_bytes=MIB)
    await system.start_gateway()
    task_id = await submit(
        system.stub,
        tasks_pb2.SubmitTaskRequest(
            custom=tasks_pb2.CustomTaskInput(type="blob", payload={"size": 2 * MIB})
        ),
    )
    task = await wait_terminal(system.stub, task_id)
    assert task.state == tasks_pb2.TASK_STATE_FAILED
    assert task.attempt == 1 and task.max_attempts == 3  # not retried
    assert task.error.type == "ResultTooLarge"
    size = len(blob_result(2 * MIB))
    assert f"{size:,} bytes" in task.error.message
    assert f"{MIB:,} bytes" in task.error.message
    assert "CONVEYOR_MAX_RESULT_BYTES" in task.error.message


async def test_an_inline_result_over_the_message_bound_is_abridged_and_streamed(
    system: System,
) -> None:
    await system.start_store(max_response_bytes=64 * 1024)
    await system.start_worker(blob_registry(), payload_inline_bytes=MIB)
    await system.start_gateway()
    task_id = await submit(
        system.stub,
        tasks_pb2.SubmitTaskRequest(
            custom=tasks_pb2.CustomTaskInput(type="blob", payload={"size": 200_000})
        ),
    )
    task = await wait_terminal(system.stub, task_id)
    assert task.state == tasks_pb2.TASK_STATE_COMPLETED
    assert task.ByteSize() <= 64 * 1024
    assert task.result.payload.name == ""  # kept by the store, not in the object store
    expected = blob_result(200_000)
    assert task.result.payload.size_bytes == len(expected)
    async with AsyncClient(system.gateway.address) as client:  # type: ignore[union-attr]
        assert b"".join([c async for c in client.payload(task_id)]) == expected
        watched = [t async for t in client.watch(task_id)]
        assert watched[-1].state == tasks_pb2.TASK_STATE_COMPLETED
        assert all(t.ByteSize() <= 64 * 1024 for t in watched)


async def test_list_pages_stay_under_the_bound_and_miss_nothing(system: System) -> None:
    await system.start_store(max_response_bytes=64 * 1024)
    await system.start_worker()
    await system.start_gateway()
    labels = {f"key{n}": "v" * 250 for n in range(20)}  # about 5 KiB per task
    later = tasks_pb2.TaskOptions(delay={"seconds": 3600}, labels=labels)
    requests = [
        tasks_pb2.SubmitTaskRequest(
            text_processing=tasks_pb2.TextProcessingInput(text=f"t{n}"), options=later
        )
        for n in range(40)
    ]
    submitted = await system.stub.SubmitTasks(tasks_pb2.SubmitTasksRequest(requests=requests))
    seen: list[str] = []
    pages = 0
    token = ""
    while True:
        page = await system.stub.ListTasks(
            tasks_pb2.ListTasksRequest(page_size=1000, page_token=token)
        )
        assert page.ByteSize() <= 64 * 1024
        seen.extend(t.id for t in page.tasks)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages > 1
    assert sorted(seen) == sorted(t.id for t in submitted.tasks)
    assert len(seen) == len(set(seen))


def bmp_of(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


async def test_an_image_result_over_the_threshold_round_trips_through_get_output(
    system: System, tmp_path: Path
) -> None:
    await system.start()
    resize = tasks_pb2.ImageOperation(resize=tasks_pb2.ImageResize(width=600, height=600))
    task_id = await submit(
        system.stub,
        tasks_pb2.SubmitTaskRequest(
            image_processing=tasks_pb2.ImageProcessingInput(
                image=png(), operations=[resize], output_format=tasks_pb2.IMAGE_FORMAT_BMP
            )
        ),
    )
    await wait_terminal(system.stub, task_id)
    channel, stub = default_stub(system)
    async with channel:
        task = (await stub.GetTask(tasks_pb2.GetTaskRequest(task_id=task_id))).task
    assert task.state == tasks_pb2.TASK_STATE_COMPLETED, task.error
    image = task.result.image_processing
    assert image.image == b""  # in the object store, past the 256 KiB threshold
    assert image.size_bytes > 256 * 1024
    assert task.result.payload.name == payloads.result_name(task_id, 1)

    target = tmp_path / "out.bmp"
    addr = system.gateway.address  # type: ignore[union-attr]
    code = await asyncio.to_thread(main, ["--addr", addr, "get", task_id, "--output", str(target)])
    assert code == 0
    written = target.read_bytes()
    assert len(written) == image.size_bytes
    assert bmp_of(written).size == (600, 600)
    assert bmp_of(written).getpixel((300, 300)) == (200, 30, 30)


async def test_watch_omit_payloads_leaves_out_image_bytes(system: System) -> None:
    await system.start()
    gray = tasks_pb2.ImageOperation(grayscale=tasks_pb2.ImageGrayscale())
    task_id = await submit(
        system.stub,
        tasks_pb2.SubmitTaskRequest(
            image_processing=tasks_pb2.ImageProcessingInput(image=png(), operations=[gray])
        ),
    )
    await wait_terminal(system.stub, task_id)

    async def last(omit: bool) -> tasks_pb2.Task:
        request = tasks_pb2.WatchTaskRequest(task_id=task_id, after_version=1, omit_payloads=omit)
        updates: list[tasks_pb2.Task] = [r.task async for r in system.stub.WatchTask(request)]
        return updates[-1]

    full, slim = await last(omit=False), await last(omit=True)
    assert full.result.image_processing.image.startswith(b"\x89PNG")
    assert slim.result.image_processing.image == b""
    assert slim.result.image_processing.width == full.result.image_processing.width
    assert slim.result.payload.size_bytes == full.result.ByteSize()


async def test_get_task_payload_of_an_unknown_or_unfinished_task_says_why(
    system: System,
) -> None:
    await system.start()
    async with AsyncClient(system.gateway.address) as client:  # type: ignore[union-attr]
        with pytest.raises(NotFound):
            await client.result("01jb0000000000000000000000")
        later = tasks_pb2.TaskOptions(delay={"seconds": 3600})
        task_id = await submit(
            system.stub,
            tasks_pb2.SubmitTaskRequest(
                text_processing=tasks_pb2.TextProcessingInput(text="soon"), options=later
            ),
        )
        with pytest.raises(FailedPrecondition, match="no result; it is scheduled"):
            await client.result(task_id)


async def test_a_large_input_is_queued_by_reference_and_runs_whole(system: System) -> None:
    await system.start()
    text = ("Lorem ipsum dolor sit amet. " * 40_000)[:MIB]
    task_id = await submit(
        system.stub,
        tasks_pb2.SubmitTaskRequest(text_processing=tasks_pb2.TextProcessingInput(text=text)),
    )
    task = await wait_terminal(system.stub, task_id)
    assert task.state == tasks_pb2.TASK_STATE_COMPLETED, task.error
    assert task.result.text_processing.characters == MIB
    assert system.gateway is not None and system.gateway.nc is not None
    js = system.gateway.nc.jetstream()
    first = await js.get_msg(subjects.STREAM_EVENTS, 1)
    [event] = messages.events_of(first.headers, first.data or b"")
    assert event.submitted.task.id == task_id
    assert len(first.data or b"") < 64 * 1024  # the text is not in the event
    assert event.submitted.input.payload.name == payloads.input_name(task_id)


async def test_a_task_with_a_large_input_runs_again_from_the_stored_input(
    system: System,
) -> None:
    await system.start_store()
    await system.start_worker(blob_registry())
    await system.start_gateway()
    task_id = await submit(
        system.stub,
        tasks_pb2.SubmitTaskRequest(
            custom=tasks_pb2.CustomTaskInput(type="measure", payload={"text": "y" * 400_000})
        ),
    )
    assert (await wait_terminal(system.stub, task_id)).state == tasks_pb2.TASK_STATE_FAILED
    await system.stub.RetryTask(tasks_pb2.RetryTaskRequest(task_id=task_id))
    task = await wait_terminal(system.stub, task_id)
    assert task.state == tasks_pb2.TASK_STATE_COMPLETED, task.error
    assert custom_result(task.result)["length"] == 400_000


async def test_deleting_a_task_deletes_its_stored_input_and_result(system: System) -> None:
    await system.start()
    text = ("Lorem ipsum dolor sit amet. " * 40_000)[:MIB]
    task_id = await submit(
        system.stub,
        tasks_pb2.SubmitTaskRequest(
            text_processing=tasks_pb2.TextProcessingInput(
                text=text, transforms=[tasks_pb2.TEXT_TRANSFORM_UPPER]
            )
        ),
    )
    task = await wait_terminal(system.stub, task_id)
    assert task.state == tasks_pb2.TASK_STATE_COMPLETED, task.error
    assert system.gateway is not None and system.gateway.nc is not None
    objects = await system.gateway.nc.jetstream().object_store(subjects.OBJECT_PAYLOADS)
    names = [payloads.input_name(task_id), payloads.result_name(task_id, 1)]
    for name in names:
        stored = (await objects.get_info(name)).size
        assert stored is not None and stored > 0

    async with AsyncClient(system.gateway.address) as client:
        await client.delete(task_id)

    for name in names:
        with pytest.raises(ObjectNotFoundError):
            await objects.get_info(name)
