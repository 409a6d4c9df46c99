"""Cancellation checks before a task starts: answered from the watched bucket without a
round trip while the watch is live, read from the bucket when it may not be."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.js.kv import KeyValue

from conveyor import jetstream, subjects
from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.config import CommonSettings
from conveyor.context import TaskContext
from conveyor.errors import TaskCancelled
from conveyor.registry import TaskType
from tests.support.early_watch import EarlyCaughtUp
from worker.cancelled import PRUNE_EVERY, CancelledTasks
from worker.middleware import Cancellation, Job


class CountingKV:
    """The bucket, counting the reads a check makes."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self.gets = 0

    async def get(self, key: str) -> Any:
        self.gets += 1
        return await self.kv.get(key)

    async def watchall(self) -> Any:
        return await self.kv.watchall()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kv, name)  # the stream and subjects, for an exact key read


class EarlyCaughtUpKV(CountingKV):
    async def watchall(self) -> Any:
        return EarlyCaughtUp(await self.kv.watchall())


@pytest.fixture
async def bucket(common: CommonSettings) -> AsyncIterator[KeyValue]:
    nc, js = await jetstream.setup(common, "cancelled-test")
    buckets = await jetstream.ensure_buckets(js, common)
    yield buckets[subjects.KV_CANCELLED]
    await jetstream.close(nc)


async def test_checks_use_the_watched_markers_without_a_round_trip(bucket: KeyValue) -> None:
    await bucket.put("before", b"1")
    kv = CountingKV(bucket)
    cancelled = CancelledTasks(kv, lambda: 0)  # type: ignore[arg-type]
    await cancelled.start()
    try:
        assert "before" in cancelled.ids  # present when the watch started
        assert not await cancelled.is_cancelled("other")
        await bucket.put("later", b"1")
        async with asyncio.timeout(10):
            while "later" not in cancelled.ids:
                await asyncio.sleep(0.01)
        assert kv.gets == 0  # a "no" needs no read
    finally:
        await cancelled.stop()


async def test_every_marker_present_at_the_start_is_known_when_the_set_is_trusted(
    bucket: KeyValue,
) -> None:
    for i in range(50):
        await bucket.put(f"early{i}", b"1")
    kv = EarlyCaughtUpKV(bucket)
    cancelled = CancelledTasks(kv, lambda: 0)  # type: ignore[arg-type]
    await cancelled.start()
    try:
        missing = [i for i in range(50) if f"early{i}" not in cancelled.ids]
        assert missing == []
        assert await cancelled.is_cancelled("early7")
        assert not await cancelled.is_cancelled("other")
        assert kv.gets == 1  # the "yes" is confirmed by a read; the "no" needs none
    finally:
        await cancelled.stop()


async def test_after_a_reconnect_checks_read_the_bucket_until_the_watch_is_back(
    bucket: KeyValue,
) -> None:
    reconnects = 0
    kv = CountingKV(bucket)
    cancelled = CancelledTasks(kv, lambda: reconnects)  # type: ignore[arg-type]
    await cancelled.start()
    try:
        assert not await cancelled.is_cancelled("x")
        assert kv.gets == 0
        reconnects = 1  # a marker put meanwhile may not have reached the watch
        assert not await cancelled.is_cancelled("absent")
        assert kv.gets == 1
        await bucket.put("x", b"1")
        async with asyncio.timeout(10):  # the watch restarts: checks need no read again
            while True:
                gets = kv.gets
                assert not await cancelled.is_cancelled("z")
                if kv.gets == gets:
                    break
                await asyncio.sleep(0.01)
        # The watch can be live again before the marker put after its restart arrives.
        async with asyncio.timeout(10):
            while "x" not in cancelled.ids:
                await asyncio.sleep(0.01)
        assert "x" in cancelled.ids
    finally:
        await cancelled.stop()


async def test_a_known_cancel_is_confirmed_by_the_bucket(bucket: KeyValue) -> None:
    """A re-drive deletes the marker just before queueing the task again: a set that
    still holds the id must not skip the new run."""
    await bucket.put("redriven", b"1")
    await bucket.put("signalled", b"1")
    kv = CountingKV(bucket)
    cancelled = CancelledTasks(kv, lambda: 0)  # type: ignore[arg-type]
    await cancelled.start()
    try:
        assert "redriven" in cancelled.ids
        await bucket.delete("redriven")
        async with asyncio.timeout(10):
            while "redriven" in cancelled.ids:
                await asyncio.sleep(0.01)
        cancelled.add("redriven")  # as if the watch had not shown the deletion yet
        assert not await cancelled.is_cancelled("redriven")
        assert "redriven" not in cancelled.ids
        cancelled.add("signalled")  # a cancel signal
        assert await cancelled.is_cancelled("signalled")
        assert kv.gets == 2
    finally:
        await cancelled.stop()


async def test_a_check_without_a_live_watch_reads_the_bucket(bucket: KeyValue) -> None:
    await bucket.put("queued", b"1")
    kv = CountingKV(bucket)
    cancelled = CancelledTasks(kv, lambda: 0)  # type: ignore[arg-type]
    # not started: nothing watched yet
    assert await cancelled.is_cancelled("queued")
    assert not await cancelled.is_cancelled("fresh")
    assert kv.gets == 2


async def test_a_handler_known_cancelled_is_not_started() -> None:
    calls: list[str] = []

    async def handler(job: Job) -> tasks_pb2.TaskResult:
        calls.append(job.message.task_id)
        return tasks_pb2.TaskResult()

    cancellation = Cancellation({"gone"})
    for task_id in ("gone", "kept"):
        ctx = TaskContext(task_id=task_id, task_type="t", attempt=1, max_attempts=1, timeout=1)
        job = Job(
            msg=None,  # type: ignore[arg-type]
            message=events_pb2.TaskMessage(task_id=task_id, type="t"),
            task_type=TaskType(name="t", handler=handler),
            ctx=ctx,
        )
        if task_id == "gone":
            with pytest.raises(TaskCancelled):
                await cancellation.around(job, handler)
            assert ctx.cancelled.is_set()
        else:
            await cancellation.around(job, handler)
    assert calls == ["kept"]


def _job(task_id: str, handler: Any) -> Job:
    ctx = TaskContext(task_id=task_id, task_type="t", attempt=1, max_attempts=1, timeout=5)
    return Job(
        msg=None,  # type: ignore[arg-type]
        message=events_pb2.TaskMessage(task_id=task_id, type="t"),
        task_type=TaskType(name="t", handler=handler),
        ctx=ctx,
    )


async def test_a_cancel_stops_the_running_handler_and_nothing_else() -> None:
    """A client's cancel ends the handler as TaskCancelled, and the delivery goes on (it
    must still record the outcome) with no cancel pending on it; a second cancel signal
    for the same task changes nothing."""
    entered = asyncio.Event()

    async def handler(job: Job) -> tasks_pb2.TaskResult:
        entered.set()
        await asyncio.sleep(30)
        return tasks_pb2.TaskResult()

    cancellation = Cancellation()

    async def delivery() -> tuple[str, int]:
        try:
            await cancellation.around(_job("running", handler), handler)
        except TaskCancelled:
            await asyncio.sleep(0)  # the delivery's next await is not cancelled
            task = asyncio.current_task()
            assert task is not None
            return "cancelled", task.cancelling()
        return "finished", 0

    running = asyncio.create_task(delivery())
    await entered.wait()
    assert cancellation.cancel("running")
    assert cancellation.cancel("running")  # the signal came twice
    assert await running == ("cancelled", 0)
    assert not cancellation.cancel("running")  # no longer running here


async def test_a_handler_that_swallows_the_cancel_leaves_none_pending() -> None:
    entered = asyncio.Event()

    async def stubborn(job: Job) -> tasks_pb2.TaskResult:
        entered.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)
        return tasks_pb2.TaskResult()

    cancellation = Cancellation()

    async def delivery() -> int:
        await cancellation.around(_job("stubborn", stubborn), stubborn)
        task = asyncio.current_task()
        assert task is not None
        async with asyncio.timeout(5):  # would take a pending cancel for its own
            await asyncio.sleep(0)
        return task.cancelling()

    running = asyncio.create_task(delivery())
    await entered.wait()
    cancellation.cancel("stubborn")
    assert await running == 0


async def test_a_shutdown_cancel_is_not_taken_for_a_clients() -> None:
    """The worker stopping cancels the delivery itself: that must stay a CancelledError
    (the task is handed back), also when a client's cancel came at the same time."""
    entered = asyncio.Event()

    async def handler(job: Job) -> tasks_pb2.TaskResult:
        entered.set()
        await asyncio.sleep(30)
        return tasks_pb2.TaskResult()

    cancellation = Cancellation()
    for also_client in (False, True):
        entered.clear()
        running = asyncio.create_task(cancellation.around(_job("t1", handler), handler))
        await entered.wait()
        running.cancel()
        if also_client:
            cancellation.cancel("t1")
        with pytest.raises(asyncio.CancelledError):
            await running


async def test_ids_learnt_longer_ago_than_markers_live_are_forgotten(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Markers expire from the bucket without the watch telling: the set must not grow
    for ever, and it forgets only ids whose markers have expired too."""
    clock = [1000.0]
    monkeypatch.setattr("worker.cancelled.time.monotonic", lambda: clock[0])
    cancelled = CancelledTasks(None, lambda: 0)  # type: ignore[arg-type]
    cancelled.add("old")
    clock[0] += jetstream.CANCELLED_TTL - 10
    cancelled.add("recent")
    assert set(cancelled.ids) == {"old", "recent"}  # "old"'s marker may still be there
    clock[0] += PRUNE_EVERY + 1  # pruned at most this often
    cancelled.add("new")
    assert set(cancelled.ids) == {"recent", "new"}
