"""One watch that fails between gateway and store ends alone: the gateway's other watches,
which share its call to the store, go on to their tasks' ends (real servers)."""

from __future__ import annotations

import asyncio
import logging
import struct

import grpc
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from conveyor import subjects
from conveyor.api.events.v1 import events_pb2
from conveyor.api.store.v1 import watch_pb2
from conveyor.api.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from conveyor.client import custom_result
from conveyor.config import MIB
from conveyor.tasks import duration, timestamp
from store import screen
from tests.conftest import System
from tests.support import custom_handlers
from tests.support.helpers import varint, watch_all, wire_field

pytestmark = pytest.mark.integration

S = tasks_pb2
WATCHERS = 30


class Watching:
    """A WatchTask stream read in the background: the updates so far, and its outcome."""

    def __init__(self, stub: tasks_pb2_grpc.TaskServiceStub, task_id: str) -> None:
        self.updates: list[S.Task] = []
        self.live = asyncio.Event()
        self.outcome = asyncio.create_task(self._read(stub, task_id))

    async def _read(self, stub: tasks_pb2_grpc.TaskServiceStub, task_id: str) -> list[S.Task]:
        async for response in stub.WatchTask(S.WatchTaskRequest(task_id=task_id)):
            self.updates.append(response.task)
            self.live.set()
        return self.updates


async def watching_others(stub: tasks_pb2_grpc.TaskServiceStub, count: int) -> list[Watching]:
    """Watches of ``count`` tasks that stay SCHEDULED a while, each past its first update:
    they are on the gateway's call to the store when what follows goes through it."""
    later = S.TaskOptions(delay=duration(3))
    watches = []
    for i in range(count):
        submitted = await stub.SubmitTask(
            S.SubmitTaskRequest(
                batch_processing=S.BatchProcessingInput(
                    items=[str(i), "x"], operation=S.BATCH_OPERATION_SQUARE, chunk_size=1
                ),
                options=later,
            )
        )
        watches.append(Watching(stub, submitted.task.id))
    async with asyncio.timeout(30):
        for watch in watches:
            await watch.live.wait()
    assert all(w.updates[0].state == S.TASK_STATE_SCHEDULED for w in watches)
    return watches


async def assert_completed(watches: list[Watching]) -> None:
    """Each watch ends at its task's completion, not with an error."""
    async with asyncio.timeout(60):
        for watch in watches:
            updates = await watch.outcome
            assert updates[-1].state == S.TASK_STATE_COMPLETED


async def test_an_update_too_big_for_the_store_call_ends_only_its_own_watch(
    system: System, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store's messages are capped at 1 MiB; a result of about 1.5 MiB, kept inline and
    # not abridged (both bounds raised past it, the worker's past what its settings
    # allow, and the store's screen of inline results with it), cannot go out.
    monkeypatch.setattr(screen, "MAX_RESULT_BYTES", 8 * MIB)
    await system.start_store(max_message_bytes=MIB, max_response_bytes=4 * MIB)
    await system.start_worker(payload_inline_bytes=4 * MIB)
    await system.start_gateway()
    stub = system.stub
    others = await watching_others(stub, WATCHERS)
    caplog.set_level(logging.ERROR)
    big = await stub.SubmitTask(
        S.SubmitTaskRequest(
            text_processing=S.TextProcessingInput(
                text="word " * 100_000,
                transforms=[S.TEXT_TRANSFORM_UPPER, S.TEXT_TRANSFORM_TITLE, S.TEXT_TRANSFORM_LOWER],
            )
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async with asyncio.timeout(60):
            await watch_all(stub, big.task.id)
    await assert_completed(others)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "too big" in (caught.value.details() or "")
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


# Deeper than a parser takes as a Struct inside WatchTasksResponse.
DEEP_SHAPE = "dddldddldldlldlddldddddddddddddldll"


async def test_a_deep_struct_result_of_an_older_worker_reaches_its_watcher_and_ends_no_other(
    system: System, nats_connection: tuple[NATS, JetStreamContext]
) -> None:
    await system.start_store()
    await system.start_worker(custom_handlers.registry())
    await system.start_gateway()
    stub = system.stub
    _, js = nats_connection
    others = await watching_others(stub, 10)
    # A result an older worker stored as a deeply nested Struct, in field 15 that TaskResult
    # reserves: unknown bytes, which no parser walks into.
    deep = await stub.SubmitTask(
        S.SubmitTaskRequest(
            custom=S.CustomTaskInput(type="never"), options=S.TaskOptions(delay=duration(60))
        )
    )
    result = wire_field(15, _nested_struct(DEEP_SHAPE))  # reserved in TaskResult
    watch_pb2.WatchTasksResponse.FromString(wire_field(1, wire_field(2, wire_field(9, result))))
    event = (
        events_pb2.TaskEvent(
            task_id=deep.task.id,
            type="never",
            attempt=1,
            worker_id="w1",
            time=timestamp(),
            start_time=timestamp(),
        ).SerializeToString()
        + wire_field(14, wire_field(1, result))  # completed.result
    )
    await js.publish(subjects.event_subject(subjects.WORKER, "never"), event)
    async with asyncio.timeout(60):
        updates = await watch_all(stub, deep.task.id)

    assert updates[-1].state == S.TASK_STATE_COMPLETED
    assert updates[-1].result.WhichOneof("result") is None
    await assert_completed(others)


async def test_updates_that_fit_one_by_one_but_not_together_all_arrive(system: System) -> None:
    await system.start_store(max_message_bytes=MIB)
    # Results kept inline (not in the object store), so each travels in its update.
    await system.start_worker(custom_handlers.registry(), concurrency=16, payload_inline_bytes=MIB)
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
        assert len(custom_result(updates[-1].result)["text"]) == 300_000
