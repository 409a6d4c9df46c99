"""A standby store replica (store.roles) beside the writer on one PostgreSQL database:
it reads its callers' writes, cancels, and streams every version of a watched task and
the changes a WatchTasks stream asks for, from its own EVENTS subscription and the
database (store.follow), while the writer applies."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import grpc
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from conveyor import subjects
from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.api.tasks.v1 import tasks_pb2_grpc
from store.app import Store
from store.lease import LEASE_KEY, Lease
from store.repository import TaskRepository
from tests.conftest import System

pytestmark = pytest.mark.integration


def later() -> S.SubmitTaskRequest:
    request = S.SubmitTaskRequest(text_processing=S.TextProcessingInput(text="one two three"))
    request.options.delay.FromSeconds(3600)
    return request


async def versions(stub: tasks_pb2_grpc.TaskServiceStub, task_id: str) -> list[S.Task]:
    request = S.WatchTaskRequest(task_id=task_id)
    return [response.task async for response in stub.WatchTask(request, timeout=30)]


@pytest.mark.postgres
async def test_a_standby_reads_cancels_and_watches_what_the_writer_applies(
    system: System, postgres_url: str
) -> None:
    await system.start_store(postgres_url, migrate="always")
    await system.start_worker()
    await system.start_gateway()
    writer = system.store
    assert writer is not None and writer.roles.writer
    standby = Store(replace(writer.settings, listen="127.0.0.1:0"))
    await standby.start()
    try:
        assert not standby.roles.writer
        async with grpc.aio.insecure_channel(standby.address) as channel:
            stub = tasks_pb2_grpc.TaskServiceStub(channel)
            # Tasks for later: read right after their submit on the standby; one cancelled
            # there, the other through the writer while the standby watches it.
            waiting = [(await system.stub.SubmitTask(later())).task for _ in range(2)]
            for task in waiting:
                read = await stub.GetTask(S.GetTaskRequest(task_id=task.id), timeout=10)
                assert read.task.state == S.TASK_STATE_SCHEDULED
            cancel = S.CancelTaskRequest(task_id=waiting[0].id)
            cancelled = await stub.CancelTask(cancel, timeout=10)
            assert cancelled.task.state == S.TASK_STATE_CANCELLED

            # A dashboard's stream of cancelled tasks on the standby, open before the cancel.
            feed = stub.WatchTasks(S.WatchTasksRequest(states=[S.TASK_STATE_CANCELLED]))
            await feed.initial_metadata()
            watch = asyncio.create_task(versions(stub, waiting[1].id))
            await asyncio.sleep(0.5)  # the watch is open, at the first version
            await system.stub.CancelTask(S.CancelTaskRequest(task_id=waiting[1].id))
            seen = await asyncio.wait_for(watch, 30)
            assert [t.version for t in seen] == [1, 2]
            assert seen[-1].state == S.TASK_STATE_CANCELLED
            change = await asyncio.wait_for(feed.read(), 30)
            assert isinstance(change, S.WatchTasksResponse)
            assert change.task.id == waiting[1].id
            assert change.task.state == S.TASK_STATE_CANCELLED
            feed.cancel()
        assert not standby.roles.writer
        assert writer.roles.writer
    finally:
        await standby.stop(0.5)


async def test_a_writer_with_nothing_to_retain_stays_the_writer(system: System) -> None:
    await system.start_store(retention_seconds=0.0)  # its retention duty returns at once
    store = system.store
    assert store is not None
    await asyncio.sleep(0.5)
    assert store.roles.writer
    assert store.metrics.registry.get_sample_value("conveyor_store_takeovers_total") == 1
    assert store.metrics.registry.get_sample_value("conveyor_store_leader") == 1


async def test_a_writer_whose_lease_and_database_were_taken_over_stands_by_and_applies_nothing(
    system: System, nats_connection: tuple[NATS, JetStreamContext]
) -> None:
    """What a paused writer finds when it wakes: another replica holds the lease and has
    claimed the database with a newer epoch. Its next batch is refused, and it stands by."""
    await system.start_store(lease_seconds=2.0)
    await system.start_worker()
    await system.start_gateway()
    store = system.store
    assert store is not None and store.roles.writer
    applied = await store.repository.applied_sequence()

    _, js = nats_connection
    lease = await js.key_value(subjects.KV_STORE)
    await lease.put(LEASE_KEY, Lease("another-replica", 7).encode())
    assert await TaskRepository(store.engine).claim_writer(7)
    await system.stub.SubmitTask(later())  # an event for the old writer's next batch

    async with asyncio.timeout(10):
        while store.roles.writer:
            await asyncio.sleep(0.05)
    assert store.metrics.registry.get_sample_value("conveyor_store_leader") == 0
    assert await store.repository.applied_sequence() == applied
