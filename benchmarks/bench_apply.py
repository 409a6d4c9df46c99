"""Benchmark of TaskRepository.apply: events per second and CPU per event, by database
and batch size.

    python -m benchmarks.bench_apply                      # SQLite file in a temp folder
    python -m benchmarks.bench_apply --postgres 127.0.0.1:5432

Each task gets a realistic life (submitted, started, two progress reports, completed),
with 200 tasks in flight at once, so batches mix inserts and updates of earlier rows.
CPU is this process's (every thread's): on a busy machine it varies less than the rate.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.ids import new_task_id
from store.db import create_engine, migrate
from store.repository import TaskRepository
from tests.support.factories import at, submitted, text_result, worker_event

IN_FLIGHT = 200


def workload(tasks: int) -> list[events_pb2.TaskEvent]:
    """Five events per task, in waves of IN_FLIGHT tasks progressing together."""
    events: list[events_pb2.TaskEvent] = []
    for wave in range(0, tasks, IN_FLIGHT):
        ids = [new_task_id() for _ in range(min(IN_FLIGHT, tasks - wave))]
        events += [submitted(i, labels={"bench": "yes", "wave": str(wave)}) for i in ids]
        events += [worker_event(i, at(1), 1, started=events_pb2.Started()) for i in ids]
        for step in (1, 2):
            progress = tasks_pb2.TaskProgress(current=step, total=2, message=f"step {step}")
            events += [
                worker_event(
                    i, at(1 + step), 1, progressed=events_pb2.Progressed(progress=progress)
                )
                for i in ids
            ]
        done = events_pb2.Completed(result=text_result(words=42))
        events += [worker_event(i, at(4), 1, completed=done) for i in ids]
    return events


async def run(url: str, events: list[events_pb2.TaskEvent], batch: int) -> tuple[float, float, int]:
    engine = create_engine(url)
    try:
        await migrate(engine)
        repository = TaskRepository(engine)
        numbered = list(enumerate(events, start=1))
        changes = 0
        start, cpu = time.perf_counter(), time.process_time()
        for offset in range(0, len(numbered), batch):
            changes += len(await repository.apply(numbered[offset : offset + batch]))
        return time.perf_counter() - start, time.process_time() - cpu, changes
    finally:
        await engine.dispose()


async def postgres_database(address: str) -> tuple[str, str]:
    host, _, port = address.rpartition(":")
    name = f"conveyor_bench_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(
        host=host, port=int(port), user="conveyor", password="conveyor", dbname="postgres",
        autocommit=True,
    ) as admin:  # fmt: skip
        await admin.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+asyncpg://conveyor:conveyor@{host}:{port}/{name}", name


async def drop_postgres_database(address: str, name: str) -> None:
    host, _, port = address.rpartition(":")
    async with await psycopg.AsyncConnection.connect(
        host=host, port=int(port), user="conveyor", password="conveyor", dbname="postgres",
        autocommit=True,
    ) as admin:  # fmt: skip
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--batch", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--postgres", metavar="HOST:PORT", help="also run on PostgreSQL")
    args = parser.parse_args()
    events = workload(args.tasks)
    print(f"{len(events)} events for {args.tasks} tasks")
    print(
        f"{'database':<11}{'batch':>7}{'seconds':>10}{'events/s':>11}"
        f"{'CPU µs/event':>14}{'changes':>9}"
    )

    def line(database: str, batch: int, seconds: float, cpu: float, changes: int) -> str:
        rate, cpu_us = len(events) / seconds, cpu / len(events) * 1e6
        return f"{database:<11}{batch:>7}{seconds:>10.2f}{rate:>11,.0f}{cpu_us:>14.1f}{changes:>9}"

    for batch in args.batch:
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
            print(line("sqlite", batch, *await run(url, events, batch)))
        if args.postgres:
            url, name = await postgres_database(args.postgres)
            try:
                print(line("postgresql", batch, *await run(url, events, batch)))
            finally:
                await drop_postgres_database(args.postgres, name)


if __name__ == "__main__":
    asyncio.run(main())
