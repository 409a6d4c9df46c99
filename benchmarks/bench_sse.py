"""What a burst of Server-Sent Events costs the gateway's SSE layer (gateway.sse), in process.

    python -m benchmarks.bench_sse [--streams 1000] [--rounds 5] [--same-task]

``--streams`` event streams wait, as a watch-fanout's watchers do, each on a source of
updates; then every source gets one update at the same moment, and the round ends when
every stream has handed its event to the server (the ASGI ``send``). Reported per event:
the wall time from the burst to the last event handed over, and this process's CPU time
over the burst. The network, uvicorn and the gateway's call to the store are left out:
what is measured is the rendering of each event, the hand-over to its stream and the
ASGI response around it. ``--same-task``: every stream watches the same task (a
dashboard's many browsers), so one rendering may serve all. Run with another checkout
first on PYTHONPATH to compare with it: the layer before its streams became bare ASGI
responses (no ``gateway.sse.EventStream``) is driven through Starlette's
StreamingResponse, as it was served, without the middleware's wrappers.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from typing import Any

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.auth.principal import LOCAL
from gateway import sse

App = Callable[[Any, Any, Any], Coroutine[Any, Any, None]]
SCOPE = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}}


def _task(index: int, version: int) -> tasks_pb2.Task:
    """A task as watch-fanout's watchers get it: a noop task, running from version 3."""
    task = tasks_pb2.Task(
        id=f"01jb{index:022d}",
        type="noop",
        state=tasks_pb2.TASK_STATE_RUNNING if version > 2 else tasks_pb2.TASK_STATE_SCHEDULED,
        attempt=1,
        max_attempts=3,
        priority=tasks_pb2.TASK_PRIORITY_NORMAL,
        version=version,
        worker_id="worker-1",
        namespace="default",
    )
    task.labels.update({"bench_run": "20261205T000000Z-000000", "bench_scenario": "watch-fanout"})
    for stamp in (task.create_time, task.update_time, task.start_time, task.run_at):
        stamp.GetCurrentTime()
    task.timeout.FromSeconds(30)
    return task


async def _source(burst: asyncio.Event, update: Any) -> AsyncGenerator[Any, None]:
    await burst.wait()
    yield update
    await asyncio.Event().wait()  # then nothing more, as a watch between updates


def _response(index: int, burst: asyncio.Event, streams: Any) -> App:
    """The stream's ASGI response, built as the door builds it."""
    first, update = _task(index, 2), _task(index, 3)
    if hasattr(sse, "EventStream"):
        lines = sse._event_lines(
            first, _source(burst, update), lambda t: streams._task_event(t, False), sse.END
        )
        app: App = sse.EventStream(lines, LOCAL)
        return app
    from starlette.responses import StreamingResponse  # before: Starlette's response

    def wire(task: tasks_pb2.Task) -> bytes:
        return tasks_pb2.WatchTaskResponse(task=task).SerializeToString()

    old: Any = sse
    lines = old._event_lines(wire(first), _source(burst, wire(update)), old._task_event, old.END)
    return StreamingResponse(old._events(lines, LOCAL), media_type="text/event-stream")


async def round_(streams: int, same_task: bool) -> tuple[float, float]:
    """(wall, CPU) seconds per event of one burst."""
    burst, leave = asyncio.Event(), asyncio.Event()
    attached: asyncio.Queue[None] = asyncio.Queue()
    written: asyncio.Queue[float] = asyncio.Queue()
    renderer: Any = sse.TaskStreams(None) if hasattr(sse, "EventStream") else None  # type: ignore[arg-type]

    async def receive() -> dict[str, Any]:
        await leave.wait()
        return {"type": "http.disconnect"}

    def sender() -> Callable[[dict[str, Any]], Awaitable[None]]:
        events = 0

        async def send(message: dict[str, Any]) -> None:
            nonlocal events
            body = message.get("body", b"")
            if message["type"] != "http.response.body" or body.startswith(b":") or not body:
                return
            events += 1
            if events == 1:
                attached.put_nowait(None)
            else:
                written.put_nowait(time.perf_counter())

        return send

    apps = [_response(0 if same_task else i, burst, renderer) for i in range(streams)]
    tasks: list[asyncio.Task[None]] = [
        asyncio.create_task(app(SCOPE, receive, sender())) for app in apps
    ]
    for _ in range(streams):
        await attached.get()
    cpu, start = time.process_time(), time.perf_counter()
    burst.set()
    last = max([await written.get() for _ in range(streams)])
    cpu = time.process_time() - cpu
    leave.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return (last - start) / streams, cpu / streams


async def main(streams: int, rounds: int, same_task: bool) -> None:
    await round_(min(streams, 100), same_task)  # warm up: imports and JSON plans
    walls, cpus = [], []
    for _ in range(rounds):
        wall, cpu = await round_(streams, same_task)
        walls.append(wall * 1e6)
        cpus.append(cpu * 1e6)
    what = "all on one task" if same_task else "one task each"
    print(f"{streams} streams ({what}), one event each, {rounds} rounds (median, min-max):")
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
    parser.add_argument("--same-task", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.streams, args.rounds, args.same_task))
