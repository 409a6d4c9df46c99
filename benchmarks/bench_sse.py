"""What a burst of Server-Sent Events costs the gateway's SSE layer (gateway.sse), in process.

    python -m benchmarks.bench_sse [--streams 1000] [--rounds 5]

``--streams`` event streams wait, as a watch-fanout's watchers do, each on a source of
serialized WatchTaskResponses; then every source gets one update at the same moment, and
the round ends when every stream has written its event. Reported per event: the wall
time from the burst to the last event written, and this process's CPU time over the
burst. The network, uvicorn and the gateway's call to the store are left out: what is
measured is the JSON and the hand-over of each event. Run with another checkout first on
PYTHONPATH to compare with it (the SSE functions of before WatchTasks take two arguments).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import statistics
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from conveyor.api.tasks.v1 import tasks_pb2
from gateway import sse


def _update(index: int) -> bytes:
    """An update as watch-fanout's watchers get it: a noop task starting to run."""
    task = tasks_pb2.Task(
        id=f"01jb{index:022d}",
        type="noop",
        state=tasks_pb2.TASK_STATE_RUNNING,
        attempt=1,
        max_attempts=3,
        priority=tasks_pb2.TASK_PRIORITY_NORMAL,
        version=3,
        worker_id="worker-1",
        namespace="default",
    )
    task.labels.update({"bench_run": "20261205T000000Z-000000", "bench_scenario": "watch-fanout"})
    for stamp in (task.create_time, task.update_time, task.start_time, task.run_at):
        stamp.GetCurrentTime()
    task.timeout.FromSeconds(30)
    return tasks_pb2.WatchTaskResponse(task=task).SerializeToString()


async def _source(burst: asyncio.Event, data: bytes) -> AsyncGenerator[bytes, None]:
    await burst.wait()
    yield data
    await asyncio.Event().wait()  # then nothing more, as a watch between updates


def _lines(first: bytes, updates: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
    event_lines: Any = sse._event_lines
    if len(inspect.signature(event_lines).parameters) == 2:  # before WatchTasks
        return event_lines(first, updates)  # type: ignore[no-any-return]
    render = sse._task_event
    return event_lines(first, updates, render, sse.END)  # type: ignore[no-any-return]


async def _stream(
    lines: AsyncIterator[bytes], attached: asyncio.Queue[None], written: asyncio.Queue[float]
) -> None:
    await anext(lines)  # the current state, before the burst
    attached.put_nowait(None)
    while True:
        chunk = await anext(lines)
        if not chunk.startswith(b":"):
            written.put_nowait(time.perf_counter())
            return


async def round_(streams: int) -> tuple[float, float]:
    """(wall, CPU) seconds per event of one burst."""
    burst = asyncio.Event()
    attached: asyncio.Queue[None] = asyncio.Queue()
    written: asyncio.Queue[float] = asyncio.Queue()
    generators = [_lines(_update(i), _source(burst, _update(i))) for i in range(streams)]
    tasks = [asyncio.create_task(_stream(g, attached, written)) for g in generators]
    for _ in range(streams):
        await attached.get()
    cpu, start = time.process_time(), time.perf_counter()
    burst.set()
    last = max([await written.get() for _ in range(streams)])
    cpu = time.process_time() - cpu
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for generator in generators:
        await generator.aclose()
    return (last - start) / streams, cpu / streams


async def main(streams: int, rounds: int) -> None:
    await round_(min(streams, 100))  # warm up: imports and JSON plans
    walls, cpus = [], []
    for _ in range(rounds):
        wall, cpu = await round_(streams)
        walls.append(wall * 1e6)
        cpus.append(cpu * 1e6)
    print(f"{streams} streams, one event each, {rounds} rounds (median, min-max):")
    print(
        f"  wall per event {statistics.median(walls):6.1f} µs "
        f"({min(walls):.1f}-{max(walls):.1f}); burst of {streams}: "
        f"{statistics.median(walls) * streams / 1000:.1f} ms"
    )
    print(f"  CPU per event  {statistics.median(cpus):6.1f} µs ({min(cpus):.1f}-{max(cpus):.1f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.streams, args.rounds))
