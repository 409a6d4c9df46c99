"""EVENTS messages holding a batch of events (``messages.event_batch``), published onto a
real EVENTS stream and applied by a real store on SQLite: every event, in order, exactly
once, screened one by one; parked when it overtakes its task; read again when the store's
database missed it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

import grpc
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from sqlalchemy import select

from conveyor import messages, subjects
from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.api.tasks.v1 import tasks_pb2_grpc
from conveyor.ids import new_task_id
from store.app import Store
from store.models import parked_events
from store.screen import MAX_BATCH_EVENTS
from tests.conftest import System
from tests.support.factories import at, submitted, text_result, worker_event

pytestmark = pytest.mark.integration

TYPE = "text_processing"
PENDING, RUNNING, COMPLETED = S.TASK_STATE_PENDING, S.TASK_STATE_RUNNING, S.TASK_STATE_COMPLETED


async def publish(
    js: JetStreamContext, publisher: str, msg_id: str, events: Sequence[events_pb2.TaskEvent]
) -> int:
    """Publishes ``events`` as one batch message; its stream sequence."""
    subject, data, headers = messages.event_batch(publisher, TYPE, msg_id, events)
    return (await js.publish(subject, data, headers=headers, timeout=5)).seq


def run(task_id: str, words: int = 3) -> list[events_pb2.TaskEvent]:
    """A worker's events of one attempt that completes."""
    return [
        worker_event(task_id, at(1), 1, started=events_pb2.Started()),
        worker_event(task_id, at(2), 1, completed=events_pb2.Completed(result=text_result(words))),
    ]


def interleaved(task_ids: list[str]) -> list[events_pb2.TaskEvent]:
    """Every task started, then every task completed: a busy worker's flush."""
    runs = [run(task_id) for task_id in task_ids]
    return [r[0] for r in runs] + [r[1] for r in runs]


async def applied(system: System) -> None:
    """Returns once the store applied everything published so far."""
    assert system.store is not None and system.store.applier is not None
    assert await system.store.applier.catch_up(30)


async def states(system: System, task_id: str) -> list[tuple[int, int]]:
    """The task's (state, version) at each version, as a watcher would see them."""
    assert system.store is not None
    return [(t.state, t.version) for t in await system.store.repository.history(task_id, 0)]


def refused(system: System, reason: str) -> float:
    assert system.store is not None
    value = system.store.metrics.registry.get_sample_value(
        "conveyor_store_refused_events_total", {"reason": reason}
    )
    return value or 0.0


async def start(system: System, database_url: str | None = None, **options: object) -> None:
    # The factories' events are from March 2026: no retention may purge their tasks.
    await system.start_store(database_url, retention_seconds=1e10, **options)


LIFE = [(PENDING, 1), (RUNNING, 2), (COMPLETED, 3)]


async def test_a_batch_of_many_tasks_applies_each_tasks_events_in_order(
    system: System, nats_connection: tuple[NATS, JetStreamContext]
) -> None:
    _, js = nats_connection
    await start(system)
    ids = [new_task_id() for _ in range(5)]
    await publish(js, subjects.GATEWAY, "g-1", [submitted(t) for t in ids])
    await publish(js, subjects.WORKER, "w-1", interleaved(ids))
    await applied(system)
    assert system.store is not None
    for task_id in ids:
        assert await states(system, task_id) == LIFE
        task = await system.store.repository.get(task_id)
        assert task is not None and task.result == text_result(3)


async def test_a_batch_published_again_or_redelivered_is_applied_once(
    system: System, nats_connection: tuple[NATS, JetStreamContext]
) -> None:
    _, js = nats_connection
    await start(system)
    ids = [new_task_id() for _ in range(3)]
    await publish(js, subjects.GATEWAY, "g-1", [submitted(t) for t in ids])
    outcomes = interleaved(ids)
    first = await publish(js, subjects.WORKER, "w-1", outcomes)
    # The same publish retried (same id): JetStream keeps one message.
    assert await publish(js, subjects.WORKER, "w-1", outcomes) == first
    # Published again under another id (past the dedupe window): a new message, whose
    # events repeat what the tasks already say and change nothing.
    assert await publish(js, subjects.WORKER, "w-2", outcomes) == first + 1
    await applied(system)
    for task_id in ids:
        assert await states(system, task_id) == LIFE

    # The store's consumer made anew delivers the stream from its start again: the
    # batches at or below the applied sequence are not applied twice.
    assert system.store is not None
    await system.store.stop(0.5)
    await js.delete_consumer(subjects.STREAM_EVENTS, subjects.STORE_CONSUMER)
    await start(system)
    later = new_task_id()
    await publish(js, subjects.GATEWAY, "g-2", [submitted(later)])
    await applied(system)
    for task_id in ids:
        assert await states(system, task_id) == LIFE
    assert await states(system, later) == [(PENDING, 1)]


async def test_batches_the_database_missed_are_read_from_the_stream_whole(
    system: System, nats_connection: tuple[NATS, JetStreamContext]
) -> None:
    """A new database behind a stream whose consumer acknowledged everything: the store
    reads each message again, a window of two sequences per transaction, batches whole."""
    _, js = nats_connection
    await start(system)
    ids = [new_task_id() for _ in range(4)]
    await publish(js, subjects.GATEWAY, "g-1", [submitted(t) for t in ids[:2]])
    await publish(js, subjects.WORKER, "w-1", interleaved(ids[:2]))
    await publish(js, subjects.GATEWAY, "g-2", [submitted(t) for t in ids[2:]])
    # A lone event among them, as a gateway publishes it.
    subject, data, headers = messages.event_message(
        subjects.GATEWAY, TYPE, "g-3", submitted(ids[3])
    )
    await js.publish(subject, data, headers=headers, timeout=5)
    await publish(js, subjects.WORKER, "w-2", interleaved(ids[2:]))
    await applied(system)
    assert system.store is not None
    await system.store.stop(0.5)

    fresh = f"sqlite+aiosqlite:///{system.tmp_path / 'fresh.db'}"
    await start(system, fresh, event_batch_size=2)
    await applied(system)
    for task_id in ids:
        assert await states(system, task_id) == LIFE


async def test_a_batch_that_overtook_its_tasks_submits_is_applied_after_them(
    system: System, nats_connection: tuple[NATS, JetStreamContext]
) -> None:
    _, js = nats_connection
    await start(system)
    assert system.store is not None
    ids = [new_task_id() for _ in range(3)]
    await publish(js, subjects.WORKER, "w-1", interleaved(ids))
    await applied(system)  # one store batch parks them all...
    async with system.store.engine.connect() as conn:
        keys = (await conn.execute(select(parked_events.c.position))).scalars().all()
    assert sorted(keys) == list(range(6))
    for task_id in ids:
        assert await states(system, task_id) == []

    await publish(js, subjects.GATEWAY, "g-1", [submitted(t) for t in reversed(ids)])
    await applied(system)  # ...and a later one applies them after their submits
    for task_id in ids:
        assert await states(system, task_id) == LIFE
    async with system.store.engine.connect() as conn:
        assert (await conn.execute(select(parked_events))).all() == []


async def test_the_screen_refuses_an_event_of_a_batch_alone_and_a_bad_batch_whole(
    system: System, nats_connection: tuple[NATS, JetStreamContext]
) -> None:
    nc, js = nats_connection
    await start(system)
    known, forged = new_task_id(), new_task_id()
    await publish(js, subjects.GATEWAY, "g-1", [submitted(known)])
    # A worker may not create a task: that event is refused, the rest of its batch applied.
    started, completed = run(known)
    await publish(js, subjects.WORKER, "w-1", [started, submitted(forged), completed])
    await applied(system)
    assert await states(system, known) == LIFE
    assert await states(system, forged) == []
    assert refused(system, "publisher") == 1

    subject = subjects.event_subject(subjects.GATEWAY, TYPE)
    lost = [new_task_id() for _ in range(3)]
    two = events_pb2.TaskEvents(events=[submitted(t) for t in lost[:2]]).SerializeToString()
    over = [submitted(lost[2])] * (MAX_BATCH_EVENTS + 1)
    bad = [
        ("3", two),  # a count its batch does not hold
        ("1", b"\xff\xff\xff"),  # bytes that are no batch
        ("many", two),
        (str(len(over)), events_pb2.TaskEvents(events=over).SerializeToString()),
    ]
    for i, (count, data) in enumerate(bad):
        headers = {subjects.HEADER_MSG_ID: f"bad-{i}", subjects.HEADER_EVENT_COUNT: count}
        await js.publish(subject, data, headers=headers, timeout=5)
    # The store goes on with the next message.
    after = new_task_id()
    await publish(js, subjects.GATEWAY, "g-2", [submitted(after)])
    await applied(system)
    assert await states(system, after) == [(PENDING, 1)]
    for task_id in lost:
        assert await states(system, task_id) == []
    assert refused(system, "malformed") == 3
    assert refused(system, "size") == 1
    assert nc.is_connected


@pytest.mark.postgres
async def test_a_standby_tells_the_watchers_of_every_task_of_a_batch(
    system: System, nats_connection: tuple[NATS, JetStreamContext], postgres_url: str
) -> None:
    _, js = nats_connection
    await start(system, postgres_url, migrate="always")
    writer = system.store
    assert writer is not None and writer.roles.writer
    standby = Store(replace(writer.settings, listen="127.0.0.1:0"))
    await standby.start()
    try:
        assert not standby.roles.writer
        ids = [new_task_id() for _ in range(3)]
        await publish(js, subjects.GATEWAY, "g-1", [submitted(t) for t in ids])
        await applied(system)
        async with grpc.aio.insecure_channel(standby.address) as channel:
            stub = tasks_pb2_grpc.TaskServiceStub(channel)

            async def versions(task_id: str) -> list[int]:
                request = S.WatchTaskRequest(task_id=task_id)
                return [r.task.version async for r in stub.WatchTask(request, timeout=30)]

            watches = [asyncio.create_task(versions(t)) for t in ids]
            await asyncio.sleep(0.5)  # the watches are open, at the first version
            await publish(js, subjects.WORKER, "w-1", interleaved(ids))
            seen = await asyncio.wait_for(asyncio.gather(*watches), 30)
        assert seen == [[1, 2, 3]] * len(ids)
    finally:
        await standby.stop(0.5)
