"""Benchmark of the store's watch fan-out: CPU per update of the WatchMuxService call.

    python -m benchmarks.bench_watch_mux [--watchers 5000] [--rounds 5]

The store's own objects, in process, on a SQLite file: ``--watchers`` tasks, each with a
watch on one WatchTasks call of ``store.mux`` (as a gateway runs them); once every watch
has sent its task's current state, the hub is handed two new versions of every task (a
worker's start and completion, as the applier hands them after a commit), and the call's
messages are read until every watch has ended. CPU is the process's between the hand-off
and the last message, serializing the messages included (gRPC would), divided by the
updates. Run it from each tree with its PYTHONPATH to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from conveyor.api.store.v1 import watch_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.ids import new_task_id
from store.db import create_engine, migrate
from store.mux import WatchMux
from store.repository import TaskRepository
from store.service import StoreService
from store.watch import WatchHub
from tests.support.factories import submitted


class _Context:
    def invocation_metadata(self) -> tuple[()]:
        return ()


def _count(message: Any) -> tuple[int, int]:
    """(task updates, ends) in a message, bytes or a WatchTasksResponse."""
    if isinstance(message, bytes):
        message = watch_pb2.WatchTasksResponse.FromString(message)
    ends = sum(u.WhichOneof("item") == "end" for u in message.updates)
    return len(message.updates) - ends, ends


async def one_round(service: StoreService, hub: WatchHub, tasks: list[tasks_pb2.Task]) -> float:
    requests: asyncio.Queue[watch_pb2.WatchTasksRequest] = asyncio.Queue()

    async def stream() -> AsyncIterator[watch_pb2.WatchTasksRequest]:
        while True:
            yield await requests.get()

    for watch_id, task in enumerate(tasks, start=1):
        start = tasks_pb2.WatchTaskRequest(task_id=task.id)
        requests.put_nowait(watch_pb2.WatchTasksRequest(watch_id=watch_id, start=start))
    call = WatchMux(service, 64 * 1024 * 1024).WatchTasks(stream(), _Context())
    messages = call.__aiter__()
    first = 0
    while first < len(tasks):  # every watch's current state
        first += _count(await anext(messages))[0]
    versions = []
    for step, state in ((1, tasks_pb2.TASK_STATE_RUNNING), (2, tasks_pb2.TASK_STATE_COMPLETED)):
        for task in tasks:
            version = tasks_pb2.Task()
            version.CopyFrom(task)
            version.version = task.version + step
            version.state = state
            versions.append(version)
    taken: list[Any] = []
    ends = 0
    start_cpu = time.process_time()
    await hub.publish(versions, 0)
    while ends < len(tasks):
        message = await anext(messages)
        data = message if isinstance(message, bytes) else message.SerializeToString()
        taken.append(data)
        ends += _count(data)[1]
    cpu = time.process_time() - start_cpu
    await messages.aclose()  # type: ignore[attr-defined]
    updates = sum(_count(m)[0] for m in taken)
    assert updates == len(versions), (updates, len(versions))
    return cpu / updates


async def main(watchers: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        engine = create_engine(f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}")
        await migrate(engine)
        repository = TaskRepository(engine)
        ids = [new_task_id() for _ in range(watchers)]
        await repository.apply(list(enumerate((submitted(i) for i in ids), start=1)))
        hub = WatchHub()
        service = StoreService(repository, hub, None, None, None, None, None, 4 * 1024 * 1024)  # type: ignore[arg-type]
        tasks = [await repository.get(i) for i in ids]
        figures = []
        for _ in range(rounds):
            figures.append(await one_round(service, hub, [t for t in tasks if t is not None]))
        await engine.dispose()
    shown = ", ".join(f"{f * 1e6:.1f}" for f in figures)
    print(
        f"{watchers} watches, 2 updates each: CPU per update {shown} µs "
        f"(median {statistics.median(figures) * 1e6:.1f} µs)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    asyncio.run(main(options.watchers, options.rounds))
