"""Deleting finished tasks, on SQLite and on PostgreSQL: by age per type, in batches, by
request; what refers to a deleted task goes with it, and its watchers are told."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.errors import NotFound
from conveyor.metrics import StoreMetrics
from store.models import task_history, task_labels
from store.repository import TaskRepository
from store.retention import Candidate, Purger, RetentionPolicy
from store.service import StoreService
from store.watch import WatchHub
from tests.support.factories import T0, Stream, at, error, submitted, text_result, worker_event

DAY = 86400.0


def finished(
    task_type: str, created: dt.datetime, failed: bool = False
) -> list[events_pb2.TaskEvent]:
    """A task that ran once, a minute after it was created, and ended."""
    submit = submitted(task_type=task_type, created=created, labels={"team": "search"})
    task_id = submit.task_id
    ran = created + dt.timedelta(minutes=1)
    kind = (
        {"failed": events_pb2.Failed(error=error(1, "bad", ran))}
        if failed
        else {"completed": events_pb2.Completed(result=text_result(3))}
    )
    outcome = worker_event(task_id, ran, 1, task_type=task_type, **kind)
    started = worker_event(task_id, ran, 1, task_type=task_type, started=events_pb2.Started())
    return [submit, started, outcome]


def running(task_type: str, created: dt.datetime) -> list[events_pb2.TaskEvent]:
    submit = submitted(task_type=task_type, created=created)
    start = events_pb2.Started()
    return [submit, worker_event(submit.task_id, created, 1, task_type=task_type, started=start)]


async def count(engine: AsyncEngine, table: object, task_id: str) -> int:
    column = table.c.task_id  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        query = select(func.count()).select_from(table).where(column == task_id)  # type: ignore[arg-type]
        return int((await conn.execute(query)).scalar_one())


async def test_retention_deletes_tasks_finished_longer_ago_than_their_type_keeps(
    repository: TaskRepository, engine: AsyncEngine
) -> None:
    stream = Stream()
    old_text = finished("text_processing", T0)
    recent_text = finished("text_processing", at(6 * DAY))
    unfinished = running("text_processing", T0)
    old_image = finished("image_processing", at(5 * DAY), failed=True)
    kept_batch = finished("batch_processing", T0)
    for events in (old_text, recent_text, unfinished, old_image, kept_batch):
        await repository.apply(stream.number(*events))
    metrics = StoreMetrics()
    purger = Purger(engine, WatchHub(), None, metrics)
    policy = RetentionPolicy(7 * DAY, {"image_processing": 1 * DAY, "batch_processing": 0})

    deleted = await purger.purge_expired(policy, at(7 * DAY + 3600))

    assert deleted == 2
    for gone in (old_text, old_image):
        task_id = gone[0].task_id
        assert await repository.get(task_id) is None
        assert await repository.history(task_id) == []
        assert await count(engine, task_labels, task_id) == 0
    for kept in (recent_text, unfinished, kept_batch):
        assert await repository.get(kept[0].task_id) is not None
    listed, _ = await repository.list()
    assert len(listed) == 3
    assert (
        metrics.registry.get_sample_value(
            "conveyor_store_purged_tasks_total", {"reason": "retention"}
        )
        == 2
    )
    rows = "conveyor_store_purged_rows_total"
    assert metrics.registry.get_sample_value(rows, {"table": "task_history"}) == 6
    assert metrics.registry.get_sample_value(rows, {"table": "task_labels"}) == 2


async def test_a_purge_takes_only_the_states_asked_a_batch_at_a_time(
    repository: TaskRepository, engine: AsyncEngine
) -> None:
    stream = Stream()
    failed = [finished("text_processing", at(i), failed=True) for i in range(5)]
    completed = [finished("text_processing", at(10 + i)) for i in range(2)]
    for events in failed + completed:
        await repository.apply(stream.number(*events))
    purger = Purger(engine, WatchHub(), None, batch_size=2, pause=0)

    purged = await purger.purge("purge", None, states=[tasks_pb2.TASK_STATE_FAILED])

    assert purged == 5
    listed, _ = await repository.list()
    assert {t.id for t in listed} == {events[0].task_id for events in completed}


async def test_an_unfinished_task_is_not_deleted(
    repository: TaskRepository, engine: AsyncEngine
) -> None:
    events = running("text_processing", T0)
    await repository.apply(Stream().number(*events))
    purger = Purger(engine, WatchHub(), None)

    assert await purger.remove([Candidate(events[0].task_id)], "delete") == []
    assert await repository.get(events[0].task_id) is not None
    assert await count(engine, task_history, events[0].task_id) == 2


async def test_a_late_event_of_a_deleted_task_is_kept_aside_not_applied(
    repository: TaskRepository, engine: AsyncEngine
) -> None:
    stream = Stream()
    events = finished("text_processing", T0)
    task_id = events[0].task_id
    await repository.apply(stream.number(*events))
    await Purger(engine, WatchHub(), None).remove([Candidate(task_id)], "delete")

    # A handler that ran twice (at-least-once) reports its outcome again.
    late = worker_event(task_id, at(90), 2, completed=events_pb2.Completed(result=text_result(1)))
    assert await repository.apply(stream.number(late)) == []
    assert await repository.get(task_id) is None


async def test_a_watcher_behind_a_task_deleted_under_it_ends_with_not_found(
    repository: TaskRepository, engine: AsyncEngine
) -> None:
    stream = Stream()
    events = running("text_processing", T0)
    task_id = events[0].task_id
    await repository.apply(stream.number(*events))
    hub = WatchHub()
    purger = Purger(engine, hub, None)
    unused: Any = None  # the watch reads none of NATS, the applier or the payload store
    service = StoreService(repository, hub, unused, unused, unused, purger, unused, 1 << 21)
    watch = service.updates(tasks_pb2.WatchTaskRequest(task_id=task_id, after_version=2))
    waiting = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0.1)  # the watcher is caught up and waits for a change
    assert not waiting.done()
    # The task ends and is deleted before the watcher hears of its end (it lagged).
    done = worker_event(task_id, at(60), 1, completed=events_pb2.Completed(result=text_result(2)))
    await repository.apply(stream.number(done))
    await purger.remove([Candidate(task_id)], "delete")

    with pytest.raises(NotFound, match="deleted"):
        async with asyncio.timeout(10):
            await waiting


async def test_events_are_applied_between_the_batches_of_a_purge(
    repository: TaskRepository, engine: AsyncEngine
) -> None:
    stream = Stream()
    for i in range(3):
        await repository.apply(stream.number(*finished("text_processing", at(i))))
    between = asyncio.Event()
    go_on = asyncio.Event()

    async def hold_after_a_batch(task_ids: object) -> None:
        between.set()
        await go_on.wait()

    purger = Purger(
        engine, WatchHub(), None, batch_size=1, pause=0, delete_payloads=hold_after_a_batch
    )
    purging = asyncio.create_task(purger.purge("purge", None))
    await asyncio.wait_for(between.wait(), 10)

    # Nothing of the purge holds a lock between its batches: a batch of events applies.
    submit = submitted(created=at(100))
    async with asyncio.timeout(10):
        changes = await repository.apply(stream.number(submit))
    assert [t.id for t in changes] == [submit.task_id]
    go_on.set()
    assert await asyncio.wait_for(purging, 10) == 3
    assert await repository.get(submit.task_id) is not None
