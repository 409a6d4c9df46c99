"""Reads build the same Task messages as the writes recorded, on SQLite and PostgreSQL.

On SQLite the repository reads on its own sqlite3 connections and builds messages straight
from row tuples; the history snapshots are built by convert.snapshot_to_task when events
are applied, so comparing the two checks every field of that shortcut.
"""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from store.repository import TaskRepository
from tests.store.conftest import postgres_admin
from tests.support.factories import Stream, at, error, submitted, text_result, worker_event


def _lives() -> list[events_pb2.TaskEvent]:
    progress = tasks_pb2.TaskProgress(current=3, total=7, message="three of seven")
    retrying = events_pb2.Retrying(error=error(1, "flaky", at(2)))
    retrying.next_attempt_time.FromDatetime(at(3))
    events = [
        submitted("01jn00000000000000000000a1", labels={"team": "a", "env": "prod"}),
        worker_event("01jn00000000000000000000a1", at(1), 1, started=events_pb2.Started()),
        worker_event(
            "01jn00000000000000000000a1",
            at(1.5),
            1,
            progressed=events_pb2.Progressed(progress=progress),
        ),
        worker_event("01jn00000000000000000000a1", at(2), 1, retrying=retrying),
        worker_event("01jn00000000000000000000a1", at(3), 2, started=events_pb2.Started()),
        worker_event(
            "01jn00000000000000000000a1",
            at(4),
            2,
            failed=events_pb2.Failed(error=error(2, "broken", at(4))),
        ),
        submitted("01jn00000000000000000000a2", created=at(0.5), scheduled=True),
        submitted("01jn00000000000000000000a3", created=at(0.25), labels={"team": "b"}),
        worker_event("01jn00000000000000000000a3", at(1), 1, started=events_pb2.Started()),
        worker_event(
            "01jn00000000000000000000a3",
            at(2),
            1,
            completed=events_pb2.Completed(result=text_result(words=9)),
        ),
        submitted("01jn00000000000000000000a4", created=at(0.1)),
        worker_event("01jn00000000000000000000a4", at(1), 1, started=events_pb2.Started()),
        worker_event(
            "01jn00000000000000000000a4",
            at(1.5),
            1,
            progressed=events_pb2.Progressed(progress=progress),
        ),
    ]
    return events


async def test_get_and_list_match_the_recorded_snapshots(repository: TaskRepository) -> None:
    await repository.apply(Stream().number(*_lives()))
    page, _ = await repository.list()
    assert [t.id for t in page] == [
        "01jn00000000000000000000a2",
        "01jn00000000000000000000a3",
        "01jn00000000000000000000a4",
        "01jn00000000000000000000a1",
    ]
    for listed in page:
        recorded = (await repository.history(listed.id))[-1]
        assert await repository.get(listed.id) == recorded
        recorded.ClearField("result")  # listed tasks leave results out
        assert listed == recorded
    failed = await repository.get("01jn00000000000000000000a1")
    assert failed is not None
    assert [e.message for e in failed.attempt_errors] == ["flaky", "broken"]
    assert failed.timeout.seconds == 30
    scheduled = await repository.get("01jn00000000000000000000a2")
    assert scheduled is not None and scheduled.HasField("run_at")
    assert not scheduled.HasField("start_time")
    running = await repository.get("01jn00000000000000000000a4")
    assert running is not None and running.progress.message == "three of seven"


async def test_reads_see_each_committed_batch(repository: TaskRepository) -> None:
    stream = Stream()
    assert await repository.get("01jn00000000000000000000b1") is None
    await repository.apply(stream.number(submitted("01jn00000000000000000000b1")))
    task = await repository.get("01jn00000000000000000000b1")
    assert task is not None and task.state == tasks_pb2.TASK_STATE_PENDING
    started = worker_event("01jn00000000000000000000b1", at(1), 1, started=events_pb2.Started())
    await repository.apply(stream.number(started))
    task = await repository.get("01jn00000000000000000000b1")
    assert task is not None and task.state == tasks_pb2.TASK_STATE_RUNNING
    assert [t.version for t in await repository.history(task.id)] == [1, 2]


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
async def test_a_read_survives_the_database_dropping_its_connections(
    repository: TaskRepository, database_url: str
) -> None:
    """PostgreSQL only: SQLite has no server to drop connections."""
    await repository.apply(Stream().number(submitted("01jn00000000000000000000c1")))
    assert await repository.get("01jn00000000000000000000c1") is not None
    # As a database restart does: every session of the test database ends.
    name = make_url(database_url).database
    async with await postgres_admin() as admin:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
    task = await repository.get("01jn00000000000000000000c1")
    assert task is not None and task.id == "01jn00000000000000000000c1"
    page, _ = await repository.list()
    assert [t.id for t in page] == ["01jn00000000000000000000c1"]
