"""What publishing a task's outcome costs the worker and nats-server: one message per
event (as the worker did before group commit) against worker.events' batches.

    python -m benchmarks.bench_worker_events [--events 20000] [--rounds 3]

Against a nats-server of its own (JetStream, file storage, the EVENTS stream declared as
the services do), ``in flight`` tasks publish a no-op task's ``completed`` event each and
await it, over and over, inside an unsampled trace as a delivered task's run is: "one
each" awaits ``AckedPublisher.publish`` of a lone event under its own id (traceparent
header included), "batched" awaits ``EventPublisher.publish``. Rounds alternate; the
figures are the medians: CPU time of this process and of nats-server per event, events
per second, and the messages stored per event.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from conveyor import jetstream, messages, subjects
from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.config import CommonSettings
from conveyor.ids import new_task_id
from conveyor.tasks import timestamp
from worker.events import EventPublisher

Publish = Callable[[events_pb2.TaskMessage], Awaitable[None]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def outcome() -> events_pb2.Completed:
    result = tasks_pb2.TaskResult(custom=tasks_pb2.CustomTaskResult(json="{}"))
    return events_pb2.Completed(result=result)


async def run(publish: Publish, events: int, in_flight: int) -> float:
    """Publishes ``events`` outcomes, ``in_flight`` at a time; returns the wall time."""
    left = events

    async def task_loop() -> None:
        nonlocal left
        span = NonRecordingSpan(
            SpanContext(
                int.from_bytes(os.urandom(16)), int.from_bytes(os.urandom(8)), False, TraceFlags(0)
            )
        )
        with trace.use_span(span):
            while left > 0:
                left -= 1
                await publish(events_pb2.TaskMessage(task_id=new_task_id(), type="noop"))

    started = time.perf_counter()
    await asyncio.gather(*(task_loop() for _ in range(in_flight)))
    return time.perf_counter() - started


async def measure(args: argparse.Namespace) -> None:
    binary = shutil.which("nats-server")
    if binary is None:
        raise SystemExit("nats-server is not on PATH")
    with tempfile.TemporaryDirectory() as data:
        port = free_port()
        server = subprocess.Popen(
            [binary, "-js", "-sd", data, "-a", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            await asyncio.sleep(0.5)
            settings = CommonSettings(nats_url=f"nats://127.0.0.1:{port}")
            nc, js = await jetstream.setup(settings, "bench")
            try:
                await compare(args, nc, js, server.pid)
            finally:
                await jetstream.close(nc)
        finally:
            server.terminate()
            server.wait()


async def compare(
    args: argparse.Namespace, nc: NATS, js: JetStreamContext, server_pid: int
) -> None:
    acks = messages.publisher(js, nc)

    async def one_each(message: events_pb2.TaskMessage) -> None:
        event = events_pb2.TaskEvent(
            task_id=message.task_id,
            type=message.type,
            time=timestamp(),
            attempt=1,
            worker_id="worker-1",
            start_time=timestamp(),
            completed=outcome(),
        )
        msg_id = f"{message.task_id}:1:completed"
        await acks.publish(*messages.event_message(subjects.WORKER, message.type, msg_id, event))

    print(f"{args.events} outcome events per round, {args.rounds} rounds (medians)\n")
    print(
        "| in flight | path | µs CPU/event (this process) | µs CPU/event (nats-server) "
        "| events/s | messages/event |"
    )
    print("|---:|---|---:|---:|---:|---:|")
    for in_flight in args.in_flight:
        figures: dict[str, list[tuple[float, float, float, float]]] = {}
        for _ in range(args.rounds):
            in_batches = batched(EventPublisher(js, "worker-1", nc))
            for name, publish in (("one each", one_each), ("batched", in_batches)):
                before = (await js.stream_info(subjects.STREAM_EVENTS)).state.messages
                cpu, server_cpu = time.process_time(), cpu_seconds(server_pid)
                wall = await run(publish, args.events, in_flight)
                cpu, server_cpu = time.process_time() - cpu, cpu_seconds(server_pid) - server_cpu
                after = (await js.stream_info(subjects.STREAM_EVENTS)).state.messages
                figures.setdefault(name, []).append(
                    (
                        cpu / args.events * 1e6,
                        server_cpu / args.events * 1e6,
                        args.events / wall,
                        (after - before) / args.events,
                    )
                )
        for name, rows in figures.items():
            cpu, server, rate, stored = (
                statistics.median(column) for column in zip(*rows, strict=True)
            )
            print(
                f"| {in_flight} | {name} | {cpu:.0f} | {server:.0f} | {rate:,.0f} | {stored:.3f} |"
            )


def batched(publisher: EventPublisher) -> Publish:
    """The worker's path: one outcome through the group-committing publisher."""

    async def publish(message: events_pb2.TaskMessage) -> None:
        await publisher.publish(message, 1, start_time=timestamp(), completed=outcome())

    return publish


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 8, 64])
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
