"""Priorities: a high task overtakes a backlog; lower priorities are never starved."""

from __future__ import annotations

import asyncio

import pytest
from google.protobuf import struct_pb2

from conveyor.api.tasks.v1 import tasks_pb2 as S
from tests.conftest import System
from tests.support import custom_handlers
from tests.support.custom_handlers import Calls

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def record(tag: str, priority: S.TaskPriority) -> S.SubmitTaskRequest:
    payload = struct_pb2.Struct()
    payload.update({"tag": tag})
    return S.SubmitTaskRequest(
        custom=S.CustomTaskInput(type="record", payload=payload),
        options=S.TaskOptions(priority=priority),
    )


async def submit_backlog(system: System, requests: list[S.SubmitTaskRequest]) -> None:
    for start in range(0, len(requests), 500):
        await system.stub.SubmitTasks(S.SubmitTasksRequest(requests=requests[start : start + 500]))


async def wait_started(count: int, timeout: float = 120) -> None:
    async with asyncio.timeout(timeout):
        while len(Calls.started) < count:
            await asyncio.sleep(0.05)


async def queue_with_worker_down(system: System) -> None:
    """The system with the `record` type registered and no worker running."""
    await system.start_store()
    worker = await system.start_worker(custom_handlers.registry(), shutdown_grace_seconds=1.0)
    await system.start_gateway()
    await worker.stop()
    system.workers.clear()
    Calls.started = []


async def test_high_task_overtakes_a_backlog_of_normal_tasks(system: System) -> None:
    await queue_with_worker_down(system)
    await submit_backlog(system, [record("normal", S.TASK_PRIORITY_NORMAL)] * 2000)
    await system.stub.SubmitTask(record("high", S.TASK_PRIORITY_HIGH))
    await system.start_worker(custom_handlers.registry(), concurrency=1)
    await wait_started(30)
    assert Calls.started.index("high") < 10, Calls.started[:30]


async def test_low_priority_progresses_under_sustained_high_load(system: System) -> None:
    await queue_with_worker_down(system)
    backlog = [record("high", S.TASK_PRIORITY_HIGH)] * 1500
    backlog += [record("low", S.TASK_PRIORITY_LOW)] * 300
    await submit_backlog(system, backlog)
    await system.start_worker(custom_handlers.registry(), concurrency=1)
    await wait_started(400)
    first = Calls.started[:400]
    # Weighted rounds: about 5% of them start with low. Starvation would give zero here.
    assert 2 <= first.count("low") <= 100, first.count("low")
    assert first.count("high") >= 300
