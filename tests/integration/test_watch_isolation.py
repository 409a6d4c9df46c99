"""One watch that fails between gateway and store ends alone: the gateway's other watches,
which share its call to the store, go on to their tasks' ends (real servers)."""

from __future__ import annotations

import asyncio
import logging
import struct

import grpc
import pytest
from google.protobuf.message import DecodeError
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from conveyor import subjects
from conveyor.api.events.v1 import events_pb2
from conveyor.api.store.v1 import watch_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.config import MIB
from conveyor.tasks import duration, timestamp
from tests.conftest import System
from tests.integration import custom_handlers
from tests.integration.helpers import varint, watch_all, wire_field

pytestmark = pytest.mark.integration

S = tasks_pb2
WATCHERS = 30


async def test_an_update_too_big_for_the_store_call_ends_only_its_own_watch(
    system: System, caplog: pytest.LogCaptureFixture
) -> None:
    # The store's messages are capped at 1 MiB; a result of about 1.5 MiB cannot go out.
    await system.start_store(max_message_bytes=MIB)
    await system.start_worker()
    await system.start_gateway()
    stub = system.stub
    slow = S.TaskOptions(delay=duration(1))
    big = await stub.SubmitTask(
        S.SubmitTaskRequest(
            text_processing=S.TextProcessingInput(
                text="word " * 100_000,
                transforms=[S.TEXT_TRANSFORM_UPPER, S.TEXT_TRANSFORM_TITLE, S.TEXT_TRANSFORM_LOWER],
            ),
            options=slow,
        )
    )
    small = [
        await stub.SubmitTask(
            S.SubmitTaskRequest(
                batch_processing=S.BatchProcessingInput(
                    items=[str(i), "x"], operation=S.BATCH_OPERATION_SQUARE, chunk_size=1
                ),
                options=slow,
            )
        )
        for i in range(WATCHERS)
    ]
    caplog.set_level(logging.ERROR)
    watches = [asyncio.create_task(watch_all(stub, response.task.id)) for response in [big, *small]]
    async with asyncio.timeout(60):
        outcomes = await asyncio.gather(*watches, return_exceptions=True)

    failed = outcomes[0]
    assert isinstance(failed, grpc.aio.AioRpcError), failed
    assert failed.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "too big" in (failed.details() or "")
    for updates in outcomes[1:]:
        assert not isinstance(updates, BaseException), updates
        assert updates[0].state == S.TASK_STATE_SCHEDULED
        assert updates[-1].state == S.TASK_STATE_COMPLETED
    # A failure of one watch is no error of the store: no traceback logged for it.
    assert [r for r in caplog.records if r.exc_info] == []


def _nested_struct(shape: str) -> bytes:
    """A serialized Struct holding dicts ("d") and lists ("l") nested in that order."""
    value = varint(2 << 3 | 1) + struct.pack("<d", 1.0)  # Value.number_value
    for kind in reversed(shape):
        if kind == "d":
            value = wire_field(5, wire_field(1, wire_field(1, b"k") + wire_field(2, value)))
        else:
            value = wire_field(6, wire_field(1, value))
    return wire_field(1, wire_field(1, b"k") + wire_field(2, value))


# Parses as a TaskEvent and a client's WatchTaskResponse, not inside WatchTasksResponse.
DEEP_SHAPE = "dddldddldldlldlddldddddddddddddldll"


async def test_a_task_too_deep_for_the_store_call_reaches_its_watcher_and_ends_no_other(
    system: System, nats_connection: tuple[NATS, JetStreamContext]
) -> None:
    await system.start_store()
    await system.start_worker(custom_handlers.registry())
    await system.start_gateway()
    stub = system.stub
    _, js = nats_connection
    later = S.TaskOptions(delay=duration(1))
    # Results stored by a worker that does not bound nesting (an older one).
    deep = await stub.SubmitTask(
        S.SubmitTaskRequest(custom=S.CustomTaskInput(type="never"), options=later)
    )
    others = [
        await stub.SubmitTask(
            S.SubmitTaskRequest(
                custom=S.CustomTaskInput(type="greet", payload={"name": str(i)}), options=later
            )
        )
        for i in range(10)
    ]
    watches = [asyncio.create_task(watch_all(stub, r.task.id)) for r in [deep, *others]]
    result = wire_field(15, _nested_struct(DEEP_SHAPE))  # TaskResult.custom
    with pytest.raises(DecodeError):
        watch_pb2.WatchTasksResponse.FromString(wire_field(1, wire_field(2, wire_field(9, result))))
    event = (
        events_pb2.TaskEvent(
            task_id=deep.task.id, type="never", attempt=1, time=timestamp(), start_time=timestamp()
        ).SerializeToString()
        + wire_field(14, wire_field(1, result))  # completed.result
    )
    await js.publish(subjects.event_subject("never"), event)
    async with asyncio.timeout(60):
        outcomes = await asyncio.gather(*watches)

    for updates in outcomes:
        assert updates[-1].state == S.TASK_STATE_COMPLETED
    # The others were watched from before the deep update went through the call.
    assert all(updates[0].state == S.TASK_STATE_SCHEDULED for updates in outcomes[1:])
    assert outcomes[0][-1].result.custom.fields["k"].WhichOneof("kind") == "struct_value"


async def test_updates_that_fit_one_by_one_but_not_together_all_arrive(system: System) -> None:
    await system.start_store(max_message_bytes=MIB)
    await system.start_worker(custom_handlers.registry(), concurrency=16)
    await system.start_gateway()
    stub = system.stub
    # Each result is about 300 KB: three fit in one of the store's messages, four do not.
    # Due together, they complete together, and their watchers' updates queue up at once.
    request = S.SubmitTaskRequest(
        custom=S.CustomTaskInput(type="echo", payload={"text": "x" * 300_000}),
        options=S.TaskOptions(delay=duration(1)),
    )
    ids = [(await stub.SubmitTask(request)).task.id for _ in range(12)]
    async with asyncio.timeout(60):
        outcomes = await asyncio.gather(*(watch_all(stub, task_id) for task_id in ids))
    for updates in outcomes:
        assert updates[-1].state == S.TASK_STATE_COMPLETED
        assert len(updates[-1].result.custom.fields["text"].string_value) == 300_000
