"""Fills a store database with many realistic tasks quickly, without running the pipeline.

    python -m benchmarks.seed_tasks --tasks 1000000 \\
        --url sqlite+aiosqlite:////tmp/seed/conveyor.db
    python -m benchmarks.seed_tasks --tasks 1000000 \\
        --url postgresql+asyncpg://conveyor:conveyor@127.0.0.1:5432/conveyor_seed

Every task is a stream of synthetic events (submitted, started, then completed, failed or
a retry) applied through :meth:`TaskRepository.apply` in large batches, so rows, labels,
history and indexes are exactly what the store writes for real tasks. The mix: 80 %
completed, 5 % completed after a retry, 5 % failed, 10 % failed as lost (5 % never started,
5 % while running: what the scheduler's reconciler records for tasks a fresh nats-server
has not queued; a seeded store has no unfinished tasks, which the reconciler would fail
one a second while a benchmark runs); types
``noop`` (6 in 7) and ``text_processing``; labels ``bench_run=seed-NNN`` (10,000 tasks per
value) and ``bench_scenario=seed``. Tasks are created 10 ms apart, the newest an hour ago,
so tasks a later bench submits are the newest.

The events get sequences 1..N, which no real EVENTS stream has: afterwards the applied
sequence is set back to 0 (unless ``--keep-sequence``), so a store started on the database
with a fresh nats-server applies the new stream's events from its first. A PostgreSQL
database that does not exist is created; ``--fresh`` drops an existing one first (SQLite:
removes the file). PostgreSQL gets a ``VACUUM ANALYZE`` at the end, as autovacuum would do.

Then serve it, e.g. with ``conveyor dev --data-dir DIR`` where ``DIR/conveyor.db`` is the
seeded SQLite file, or ``CONVEYOR_DATABASE_URL=... conveyor dev``; and measure reads with
``conveyor bench --scenario read-latency`` or ``python -m benchmarks.bench_read``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
from sqlalchemy import delete, text, update
from sqlalchemy.engine import make_url

from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.ids import new_task_id
from store.db import create_engine, migrate
from store.models import CURSOR_ID, parked_events, store_cursor
from store.repository import TaskRepository
from tests.support.factories import error, submitted, text_result, worker_event

SPACING = dt.timedelta(milliseconds=10)
LABEL_GROUP = 10_000
"""Tasks per ``bench_run`` label value."""


def task_events(index: int, created: dt.datetime) -> list[events_pb2.TaskEvent]:
    """The events of task number ``index``: its whole life, as the pipeline publishes it."""
    task_id = new_task_id(int(created.timestamp() * 1000))
    task_type = "text_processing" if index % 7 == 0 else "noop"
    labels = {"bench_run": f"seed-{index // LABEL_GROUP:03d}", "bench_scenario": "seed"}
    events = [submitted(task_id, task_type=task_type, created=created, labels=labels)]
    _live(events, task_id, index % 20, created, index)
    for event in events:
        event.type = task_type
    return events


def _live(
    events: list[events_pb2.TaskEvent], task_id: str, life: int, created: dt.datetime, index: int
) -> None:
    ms = dt.timedelta(milliseconds=1)
    if life == 0:
        events.append(lost(task_id, created + 9 * ms, 1))  # never started
        return
    events.append(worker_event(task_id, created + 2 * ms, 1, started=events_pb2.Started()))
    if life == 1:
        events.append(lost(task_id, created + 9 * ms, 1))  # its worker died
        return
    if life == 2:
        failed = events_pb2.Failed(error=error(1, "boom", created + 3 * ms))
        events.append(worker_event(task_id, created + 3 * ms, 1, failed=failed))
        return
    attempt = 1
    if life == 3:
        retrying = events_pb2.Retrying(error=error(1, "flaky", created + 3 * ms))
        retrying.next_attempt_time.FromDatetime(created + 5 * ms)
        events.append(worker_event(task_id, created + 3 * ms, 1, retrying=retrying))
        events.append(worker_event(task_id, created + 5 * ms, 2, started=events_pb2.Started()))
        attempt = 2
    done = events_pb2.Completed(result=text_result(words=index % 100))
    events.append(worker_event(task_id, created + 6 * ms, attempt, completed=done))


def lost(task_id: str, when: dt.datetime, attempt: int) -> events_pb2.TaskEvent:
    """The failure the scheduler's reconciler records for a task in no stream."""
    failed = events_pb2.Failed(error=error(attempt, "lost: in no stream", when))
    failed.error.type = "lost"
    return worker_event(task_id, when, attempt, worker="scheduler", failed=failed)


async def finish_unfinished(repository: TaskRepository, sequence: int) -> int:
    """Fails every unfinished task as lost (as the reconciler would: a fresh nats-server
    has none of them queued); returns the last sequence used."""
    unfinished = [tasks_pb2.TASK_STATE_PENDING, tasks_pb2.TASK_STATE_RUNNING]
    unfinished += [tasks_pb2.TASK_STATE_SCHEDULED, tasks_pb2.TASK_STATE_RETRYING]
    while True:
        page, _ = await repository.list(states=unfinished, page_size=1000)
        if not page:
            return sequence
        events = []
        for task in page:
            event = lost(task.id, dt.datetime.now(dt.UTC), max(task.attempt, 1))
            event.type = task.type
            events.append(event)
        numbered = list(enumerate(events, start=sequence + 1))
        sequence += len(events)
        await repository.apply(numbered)
        print(f"failed {len(events)} unfinished tasks as lost", flush=True)


def batches(
    tasks: int, per_batch: int, newest: dt.datetime
) -> Iterator[list[events_pb2.TaskEvent]]:
    """The events of ``tasks`` tasks, ``per_batch`` tasks at a time, oldest first."""
    first = newest - SPACING * (tasks - 1)
    for start in range(0, tasks, per_batch):
        events: list[events_pb2.TaskEvent] = []
        for index in range(start, min(tasks, start + per_batch)):
            events += task_events(index, first + SPACING * index)
        yield events


async def ensure_postgres_database(url: str, fresh: bool) -> None:
    """Creates the URL's PostgreSQL database if missing (dropping it first when fresh)."""
    parsed = make_url(url)
    async with await psycopg.AsyncConnection.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        dbname="postgres",
        autocommit=True,
    ) as admin:
        name = parsed.database
        if fresh:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        found = await admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if await found.fetchone() is None:
            await admin.execute(f'CREATE DATABASE "{name}"')


async def seed(url: str, tasks: int, per_batch: int, keep_sequence: bool, fresh: bool) -> None:
    """Seeds the database; with ``tasks`` 0, only fails unfinished tasks (older seeds)."""
    backend = make_url(url).get_backend_name()
    if backend == "postgresql":
        await ensure_postgres_database(url, fresh)
    elif fresh:
        database = make_url(url).database or ""
        for suffix in ("", "-wal", "-shm"):
            Path(database + suffix).unlink(missing_ok=True)
    engine = create_engine(url)
    try:
        await migrate(engine)
        repository = TaskRepository(engine)
        sequence = await repository.applied_sequence()
        newest = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
        started = time.perf_counter()
        done = 0
        for events in batches(tasks, per_batch, newest):
            numbered = list(enumerate(events, start=sequence + 1))
            sequence += len(events)
            await repository.apply(numbered)
            done += per_batch
            if done % (per_batch * 20) == 0 or done >= tasks:
                elapsed = time.perf_counter() - started
                print(
                    f"{min(done, tasks):>10,} tasks  {sequence:>11,} events  {elapsed:7.1f} s  "
                    f"{min(done, tasks) / elapsed:8,.0f} tasks/s",
                    flush=True,
                )
        sequence = await finish_unfinished(repository, sequence)
        if not keep_sequence:
            async with engine.begin() as conn:
                await conn.execute(
                    update(store_cursor)
                    .where(store_cursor.c.id == CURSOR_ID)
                    .values(applied_sequence=0)
                )
                # Parked events are keyed by the old stream's sequences, which the new
                # stream numbers again from 1.
                await conn.execute(delete(parked_events))
        if backend == "postgresql":
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text("VACUUM ANALYZE"))
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the database (SQLAlchemy async URL)")
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000, help="tasks per apply() call")
    parser.add_argument("--fresh", action="store_true", help="start from an empty database")
    parser.add_argument(
        "--keep-sequence", action="store_true", help="leave the applied sequence at the end"
    )
    args = parser.parse_args()
    asyncio.run(seed(args.url, args.tasks, args.batch, args.keep_sequence, args.fresh))


if __name__ == "__main__":
    main()
