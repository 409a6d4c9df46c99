"""The ``TimeLimit`` middleware: an attempt past its timeout fails with TaskTimeout; a
cancel from elsewhere (a shutdown, a client's cancel) stays a cancel; a handler that
swallows the limit's cancel leaves its task with no cancel pending.

At the middleware's own seam: a handler call in a task, as the runner makes it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.context import TaskContext
from conveyor.errors import TaskTimeout
from conveyor.registry import TaskType
from worker.middleware import Job, TimeLimit


def job(timeout: float) -> Job:
    async def handler(ctx: TaskContext, payload: Any) -> Any:
        return payload

    ctx = TaskContext(task_id="t1", task_type="t", attempt=1, max_attempts=1, timeout=timeout)
    message = events_pb2.TaskMessage(task_id="t1", type="t")
    return Job(msg=None, message=message, task_type=TaskType("t", handler), ctx=ctx)  # type: ignore[arg-type]


async def test_an_attempt_past_its_limit_fails_with_a_timeout() -> None:
    async def slow(_: Job) -> tasks_pb2.TaskResult:
        await asyncio.sleep(30)
        return tasks_pb2.TaskResult()

    with pytest.raises(TaskTimeout, match=r"time limit of 0\.05s"):
        await asyncio.create_task(TimeLimit().around(job(0.05), slow))


async def test_a_cancel_from_elsewhere_stays_a_cancel() -> None:
    started = asyncio.Event()

    async def slow(_: Job) -> tasks_pb2.TaskResult:
        started.set()
        await asyncio.sleep(30)
        return tasks_pb2.TaskResult()

    attempt = asyncio.create_task(TimeLimit().around(job(30), slow))
    await started.wait()
    attempt.cancel()  # a shutdown
    with pytest.raises(asyncio.CancelledError):
        await attempt


async def test_a_swallowed_limit_leaves_no_cancel_pending() -> None:
    async def stubborn(_: Job) -> tasks_pb2.TaskResult:
        with contextlib.suppress(asyncio.CancelledError):  # a handler that will not stop
            await asyncio.sleep(30)
        await asyncio.sleep(0)  # would raise if the limit's cancel were still pending
        return tasks_pb2.TaskResult()

    async def attempt() -> int:
        await TimeLimit().around(job(0.05), stubborn)
        current = asyncio.current_task()
        assert current is not None
        return current.cancelling()

    assert await asyncio.create_task(attempt()) == 0


async def test_a_quick_attempt_returns_its_result() -> None:
    async def quick(_: Job) -> tasks_pb2.TaskResult:
        return tasks_pb2.TaskResult(custom=tasks_pb2.CustomTaskResult(json="{}"))

    result = await asyncio.create_task(TimeLimit().around(job(30), quick))
    assert result.custom.json == "{}"
