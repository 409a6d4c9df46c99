"""Tasks whose events reach the store in batches (a worker's events of many tasks in one
EVENTS message) complete with the history they would have one event at a time: every
task COMPLETED with its own result, its attempts and their errors, its start and end."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from conveyor import messages, subjects
from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.client import AsyncClient, custom_result
from tests.conftest import System
from tests.support import custom_handlers
from tests.support.custom_system import custom

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MANY = 300


class Wire:
    """Counts the worker's messages on EVENTS and the events they hold (a core
    subscription sees every publish)."""

    def __init__(self) -> None:
        self.messages = 0
        self.events = 0

    async def seen(self, msg: Msg) -> None:
        self.messages += 1
        self.events += len(messages.events_of(msg.headers, msg.data))


async def start(system: System) -> None:
    await system.start_store()
    await system.start_worker(
        custom_handlers.registry(), concurrency=64, shutdown_grace_seconds=1.0
    )
    await system.start_gateway()


async def test_many_tasks_complete_with_their_own_results_from_batched_events(
    system: System, nats_connection: tuple[NATS, JetStreamContext]
) -> None:
    await start(system)
    assert system.gateway is not None
    wire = Wire()
    nc, _ = nats_connection
    await nc.subscribe(subjects.event_filter(subjects.WORKER), cb=wire.seen)
    async with AsyncClient(system.gateway.address, timeout=60) as client:
        tasks = await client.submit_many(custom("greet", name=f"n{i}") for i in range(MANY))
        done = await asyncio.gather(*(client.wait(t.id, timeout=120) for t in tasks))
    await nc.flush()
    for i, task in enumerate(done):
        assert task.state == S.TASK_STATE_COMPLETED, task.error
        assert custom_result(task.result) == {"greeting": f"hello n{i}", "attempt": 1}
        assert task.attempt == 1 and task.worker_id
        assert task.start_time.ToNanoseconds() <= task.end_time.ToNanoseconds()
    assert wire.messages < wire.events  # the outcomes did share messages


async def test_retried_tasks_keep_every_attempt_in_their_history(system: System) -> None:
    await start(system)
    assert system.gateway is not None
    async with AsyncClient(system.gateway.address, timeout=60) as client:
        tasks = await client.submit_many(custom("flaky") for _ in range(50))
        done = await asyncio.gather(*(client.wait(t.id, timeout=120) for t in tasks))
    for task in done:
        assert task.state == S.TASK_STATE_COMPLETED, task.error
        assert task.attempt == 3
        assert [e.attempt for e in task.attempt_errors] == [1, 2]
        assert all(e.type == "ConnectionError" for e in task.attempt_errors)


STATE_ORDER = [S.TASK_STATE_PENDING, S.TASK_STATE_RUNNING, S.TASK_STATE_COMPLETED]


async def test_watchers_see_each_task_move_forward_with_its_progress(system: System) -> None:
    await start(system)
    assert system.gateway is not None
    items = [str(n) for n in range(40)]
    async with AsyncClient(system.gateway.address, timeout=60) as client:
        tasks = [
            await client.submit_batch(items, S.BATCH_OPERATION_SQUARE, chunk_size=10)
            for _ in range(20)
        ]

        async def updates(task_id: str) -> list[S.Task]:
            return [t async for t in client.watch(task_id)]

        seen = await asyncio.wait_for(asyncio.gather(*(updates(t.id) for t in tasks)), 120)
    for history in seen:
        versions = [t.version for t in history]
        assert versions == sorted(set(versions))  # every change once, in order
        states = [STATE_ORDER.index(t.state) for t in history]
        assert states == sorted(states)  # never back to an earlier state
        final = history[-1]
        assert final.state == S.TASK_STATE_COMPLETED, final.error
        assert (final.progress.current, final.progress.total) == (40, 40)
        assert final.start_time.ToNanoseconds() > 0 and final.attempt == 1
