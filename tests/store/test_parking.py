"""Events that reach the store before their task's ``submitted`` event (a submit publishes
both at once, to two streams that give no order): parked, then applied right after the
task is created, exactly once; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from store import parking
from store.repository import TaskRepository
from tests.support.factories import Stream, at, submitted, text_result, worker_event
from tests.support.parking import completion, parked_count

PENDING, RUNNING = tasks_pb2.TASK_STATE_PENDING, tasks_pb2.TASK_STATE_RUNNING
COMPLETED = tasks_pb2.TASK_STATE_COMPLETED


async def test_an_event_before_its_submit_in_one_batch_is_applied_after_it(
    repository: TaskRepository,
) -> None:
    task_id = "01jn00000000000000000000p1"
    changes = await repository.apply(Stream().number(completion(task_id), submitted(task_id)))

    assert [(t.state, t.version) for t in changes] == [(PENDING, 1), (RUNNING, 2), (COMPLETED, 3)]
    history = await repository.history(task_id, 0)
    assert [t.state for t in history] == [PENDING, RUNNING, COMPLETED]
    task = await repository.get(task_id)
    assert task is not None and task.result == text_result(words=5)
    assert await parked_count(repository.engine) == 0
    assert await repository.applied_sequence() == 2


async def test_an_event_parked_in_one_batch_is_applied_with_its_submit_in_a_later_one(
    repository: TaskRepository,
) -> None:
    task_id, other = "01jn00000000000000000000p2", "01jn00000000000000000000p3"
    stream = Stream()
    first = stream.number(submitted(other), completion(task_id))
    assert [t.id for t in await repository.apply(first)] == [other]  # nothing of task_id yet
    assert await repository.get(task_id) is None
    assert await parked_count(repository.engine) == 1
    assert await repository.applied_sequence() == 2

    assert await repository.apply(first) == []  # redelivered: parked once, not twice
    assert await parked_count(repository.engine) == 1

    second = stream.number(submitted(task_id))
    changes = await repository.apply(second)
    assert [(t.id, t.state, t.version) for t in changes] == [
        (task_id, PENDING, 1),
        (task_id, RUNNING, 2),
        (task_id, COMPLETED, 3),
    ]
    assert await parked_count(repository.engine) == 0
    # A repeated submit afterwards (a retried publish past the dedupe window) is ignored.
    assert await repository.apply(stream.number(submitted(task_id))) == []
    task = await repository.get(task_id)
    assert task is not None and (task.state, task.version) == (COMPLETED, 3)


async def test_several_parked_events_apply_in_stream_order(repository: TaskRepository) -> None:
    task_id = "01jn00000000000000000000p4"
    stream = Stream()
    early = stream.number(
        worker_event(task_id, at(1), 1, started=events_pb2.Started()),
        worker_event(
            task_id,
            at(2),
            1,
            progressed=events_pb2.Progressed(progress=tasks_pb2.TaskProgress(current=1, total=2)),
        ),
    )
    assert await repository.apply(early) == []
    changes = await repository.apply(
        stream.number(
            submitted(task_id),
            worker_event(task_id, at(3), 1, completed=events_pb2.Completed()),
        )
    )
    assert [(t.state, t.version, t.progress.current) for t in changes] == [
        (PENDING, 1, 0),
        (RUNNING, 2, 0),
        (RUNNING, 3, 1),
        (COMPLETED, 4, 1),
    ]


async def test_events_whose_task_never_comes_are_dropped_after_the_ttl(
    repository: TaskRepository,
) -> None:
    await repository.apply(Stream().number(completion("01jn00000000000000000000p5")))
    assert await parked_count(repository.engine) == 1
    now = dt.datetime.now(dt.UTC)
    async with repository.engine.begin() as conn:
        assert await parking.prune(conn, now) == 0  # still waiting
    async with repository.engine.begin() as conn:
        assert await parking.prune(conn, now + parking.PARKED_TTL + dt.timedelta(minutes=1)) == 1
    assert await parked_count(repository.engine) == 0


async def test_a_failed_prune_does_not_fail_the_batch_before_it(
    repository: TaskRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pruning runs after the batch's commit: were its failure the batch's, the retry would
    find the batch applied and its changes would never reach the task's watchers."""

    async def failing(_conn: object, _now: dt.datetime) -> int:
        raise OSError("database went away")

    monkeypatch.setattr(parking, "prune", failing)
    changes = await repository.apply(Stream().number(submitted("01jn00000000000000000000p6")))
    assert [task.id for task in changes] == ["01jn00000000000000000000p6"]
    assert await repository.applied_sequence() == 1


async def test_events_of_one_message_are_parked_each_and_applied_in_order(
    repository: TaskRepository,
) -> None:
    """A batch of outcomes that overtook their tasks' submits: each of its events is parked
    (one sequence, several positions) and applied after its task's submit, in order, in a
    later store batch; the next message's parked event of the same task comes after them."""
    first, second = "01jn00000000000000000000q1", "01jn00000000000000000000q2"
    stream = Stream()
    outcomes = stream.batch(
        worker_event(first, at(1), 1, started=events_pb2.Started()),
        worker_event(second, at(1), 1, started=events_pb2.Started()),
        worker_event(
            first,
            at(2),
            1,
            progressed=events_pb2.Progressed(progress=tasks_pb2.TaskProgress(current=1, total=2)),
        ),
    )
    later = stream.batch(completion(first), completion(second))
    assert await repository.apply(outcomes) == []
    assert await repository.apply(outcomes + later) == []  # a redelivery parks nothing twice
    assert await parked_count(repository.engine) == 5

    changes = await repository.apply(stream.batch(submitted(second), submitted(first)))
    assert [(t.id, t.state, t.version, t.progress.current) for t in changes] == [
        (second, PENDING, 1, 0), (second, RUNNING, 2, 0), (second, COMPLETED, 3, 0),
        (first, PENDING, 1, 0), (first, RUNNING, 2, 0), (first, RUNNING, 3, 1),
        (first, COMPLETED, 4, 1),
    ]  # fmt: skip
    assert await parked_count(repository.engine) == 0
    assert await repository.applied_sequence() == 3
