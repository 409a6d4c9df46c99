"""The floor of a durable gRPC submit in Python on this machine: what a unary call costs
when its handler does nothing, awaits one JetStream publish, or two sent together, on
three Python gRPC server stacks (grpc.aio, grpc's thread-pool server, grpclib).

    python -m benchmarks.grpc_floors [--repeat 3] [--calls 3000] [--row aio:acked1] [--json]

Every server runs in a process of its own (its CPU read from ``/proc/<pid>/stat``), one
after another, and is driven by a grpc.aio client in this process: ``--calls`` calls one
at a time after ``--warmup``, then ``--inflight-calls`` with ``--concurrency`` in flight.
The call is ``grpc.health.v1.Health/Check`` with an empty request and a two-byte answer,
as ``benchmarks/peers/grpc_floor.py`` (the floor issue 20 cites, also run here unless
``--no-peer-floor``). A publish goes to a file-storage stream of a nats-server started
here, with a ``Nats-Msg-Id``: a 200-byte "task" on one stream and, for two, a 100-byte
"event" on another, as a Conveyor submit publishes its task and its ``submitted`` event.
With ``--repeat N`` every row is measured N times in rounds (``grpc_floor.py`` first in
each) and each figure shown is the median of its rounds. Not for a busy machine's verdict:
run it when the machine is quiet, or several times, and compare figures of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from conveyor.bench._proc import cpu_seconds
from conveyor.dev import find_nats_server, free_port

SERVICE = "grpc.health.v1.Health"
METHOD = f"/{SERVICE}/Check"
TASKS_SUBJECT = "floor.tasks"
EVENTS_SUBJECT = "floor.events"
TASK = b"t" * 200
EVENT = b"e" * 100
PUBLISH_TIMEOUT = 10.0
STREAMS = {"FLOOR_TASKS": TASKS_SUBJECT, "FLOOR_EVENTS": EVENTS_SUBJECT}

WORKS = {
    "empty": "nothing",
    "js1": "1 js.publish",
    "acked1": "1 AckedPublisher",
    "js2": "2 js.publish",
    "acked2": "2 AckedPublisher",
}
"""What a handler does before it answers."""
STACKS = {
    "aio": "grpc.aio",
    "sync": "grpc sync",
    "grpclib": "grpclib",
    "direct": "no gRPC",
}
"""grpc.aio and grpclib on uvloop; grpc's thread-pool server with 64 threads; "direct":
no server, the bench process awaits the handler's work itself (its CPU is the client's)."""
DEFAULT_ROWS = (
    "aio:empty",
    "aio:js1",
    "aio:acked1",
    "aio:js2",
    "aio:acked2",
    "sync:empty",
    "sync:js1",
    "sync:acked1",
    "grpclib:empty",
    "grpclib:js1",
    "grpclib:acked1",
    "direct:js1",
    "direct:acked1",
)

Work = Callable[[], Coroutine[Any, Any, None]]


async def _make_work(work: str, nats_url: str) -> Work | None:
    """The handler's durable part, connected to NATS in the running loop (None: empty)."""
    if work == "empty":
        return None
    import nats

    from conveyor.publish import AckedPublisher

    nc = await nats.connect(nats_url)
    js = nc.jetstream(timeout=PUBLISH_TIMEOUT)
    publisher = AckedPublisher(nc, PUBLISH_TIMEOUT)
    prefix = os.urandom(6).hex()
    counter = iter(range(1 << 62))

    def ids() -> tuple[dict[str, str], dict[str, str]]:
        n = next(counter)
        return {"Nats-Msg-Id": f"{prefix}-{n}-t"}, {"Nats-Msg-Id": f"{prefix}-{n}-e"}

    async def js1() -> None:
        await js.publish(TASKS_SUBJECT, TASK, headers=ids()[0])

    async def acked1() -> None:
        await publisher.publish(TASKS_SUBJECT, TASK, ids()[0])

    async def js2() -> None:
        task, event = ids()
        await asyncio.gather(
            js.publish(EVENTS_SUBJECT, EVENT, headers=event),
            js.publish(TASKS_SUBJECT, TASK, headers=task),
        )

    async def acked2() -> None:
        task, event = ids()
        await publisher.publish_all([(EVENTS_SUBJECT, EVENT, event), (TASKS_SUBJECT, TASK, task)])

    works: dict[str, Work] = {"js1": js1, "acked1": acked1, "js2": js2, "acked2": acked2}
    return works[work]


def _serve(stack: str, work: str, port: int, nats_url: str) -> None:
    """A server's process: ``stack`` serving Health/Check, its handler doing ``work``."""
    import uvloop

    if stack == "sync":
        _serve_sync(work, port, nats_url)
    elif stack == "grpclib":
        uvloop.run(_serve_grpclib(work, port, nats_url))
    else:
        uvloop.run(_serve_aio(work, port, nats_url))


def _health_check(check: Any) -> Any:
    """The Health/Check method of the empty call, served by ``check`` (sync or async)."""
    import grpc
    from grpc_health.v1 import health_pb2

    handler = grpc.unary_unary_rpc_method_handler(
        check,
        request_deserializer=health_pb2.HealthCheckRequest.FromString,
        response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(SERVICE, {"Check": handler})


async def _serve_aio(work: str, port: int, nats_url: str) -> None:
    import grpc
    from grpc_health.v1 import health_pb2

    durable = await _make_work(work, nats_url)
    answer = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    async def check(request: Any, context: Any) -> Any:
        if durable is not None:
            await durable()
        return answer

    server = grpc.aio.server()
    server.add_generic_rpc_handlers([_health_check(check)])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def _serve_sync(work: str, port: int, nats_url: str) -> None:
    """grpc's thread-pool server; a publish runs on an event loop in a thread of its own,
    each handler thread waiting for its result."""
    import grpc
    import uvloop
    from grpc_health.v1 import health_pb2

    loop = uvloop.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    durable = asyncio.run_coroutine_threadsafe(_make_work(work, nats_url), loop).result()
    answer = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    def check(request: Any, context: Any) -> Any:
        if durable is not None:
            asyncio.run_coroutine_threadsafe(durable(), loop).result()
        return answer

    server = grpc.server(ThreadPoolExecutor(max_workers=64))
    server.add_generic_rpc_handlers([_health_check(check)])
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


async def _serve_grpclib(work: str, port: int, nats_url: str) -> None:
    from grpc_health.v1 import health_pb2
    from grpclib.const import Cardinality, Handler
    from grpclib.server import Server, Stream

    durable = await _make_work(work, nats_url)
    answer = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    async def check(stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        if durable is not None:
            await durable()
        await stream.send_message(answer)

    class Health:
        def __mapping__(self) -> dict[str, Handler]:
            return {
                METHOD: Handler(
                    check,
                    Cardinality.UNARY_UNARY,
                    health_pb2.HealthCheckRequest,
                    health_pb2.HealthCheckResponse,
                )
            }

    server = Server([Health()])
    await server.start("127.0.0.1", port)
    await server.wait_closed()


@dataclass
class Mode:
    """One way of driving a server: its calls' latency, rate and the CPU they cost."""

    calls: int
    rate: float
    p50_ms: float
    p99_ms: float
    server_cpu_ms: float | None
    """The server process's CPU (user + system, every thread) per call; None: no server."""
    nats_cpu_ms: float
    client_cpu_ms: float


@dataclass
class Row:
    stack: str
    work: str
    sequential: Mode
    inflight: Mode


def _percentile(sorted_seconds: Sequence[float], share: float) -> float:
    return sorted_seconds[min(len(sorted_seconds) - 1, int(len(sorted_seconds) * share))] * 1e3


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


@contextmanager
def _cpu(pids: Sequence[int]) -> Iterator[list[float]]:
    """CPU seconds used by each of ``pids`` then by this process, over the ``with`` block
    (the list is filled when it ends)."""
    before = [cpu_seconds(pid) for pid in pids] + [_own_cpu()]
    used: list[float] = []
    yield used
    after = [cpu_seconds(pid) for pid in pids] + [_own_cpu()]
    used.extend(a - b for a, b in zip(after, before, strict=True))


def median_row(samples: Sequence[Row]) -> Row:
    """One row whose every figure is the median of that figure over ``samples`` (rounds of
    the same stack and work)."""

    def median_mode(modes: list[Mode]) -> Mode:
        values: dict[str, Any] = {}
        for name, first in asdict(modes[0]).items():
            if first is None:
                values[name] = None
            else:
                values[name] = statistics.median(getattr(m, name) for m in modes)
        values["calls"] = modes[0].calls
        return Mode(**values)

    return Row(
        samples[0].stack,
        samples[0].work,
        median_mode([r.sequential for r in samples]),
        median_mode([r.inflight for r in samples]),
    )


def _mode(seconds: list[float], elapsed: float, used: list[float]) -> Mode:
    """``used``: CPU seconds of the server (if any), nats-server and this process."""
    seconds.sort()
    n = len(seconds)
    per_call = [s / n * 1e3 for s in used]
    server = per_call[0] if len(per_call) == 3 else None
    return Mode(
        calls=n,
        rate=n / elapsed,
        p50_ms=_percentile(seconds, 0.5),
        p99_ms=_percentile(seconds, 0.99),
        server_cpu_ms=server,
        nats_cpu_ms=per_call[-2],
        client_cpu_ms=per_call[-1],
    )


async def _drive(call: Work, pids: Sequence[int], args: argparse.Namespace) -> tuple[Mode, Mode]:
    """Awaits ``call`` one at a time, then with ``args.concurrency`` in flight."""
    for _ in range(args.warmup):
        await call()
    seconds: list[float] = []
    with _cpu(pids) as used:
        started = time.perf_counter()
        for _ in range(args.calls):
            begin = time.perf_counter()
            await call()
            seconds.append(time.perf_counter() - begin)
        elapsed = time.perf_counter() - started
    sequential = _mode(seconds, elapsed, used)

    left = args.inflight_calls
    timed: list[float] = []

    async def caller() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            begin = time.perf_counter()
            await call()
            timed.append(time.perf_counter() - begin)

    with _cpu(pids) as used:
        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - started
    return sequential, _mode(timed, elapsed, used)


async def _drive_server(
    port: int, pids: Sequence[int], args: argparse.Namespace
) -> tuple[Mode, Mode]:
    """Calls Health/Check on the server at ``port`` with a grpc.aio client."""
    import grpc
    from grpc_health.v1 import health_pb2

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), 30)
        check = channel.unary_unary(
            METHOD,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        request = health_pb2.HealthCheckRequest()

        async def call() -> None:
            await check(request)

        return await _drive(call, pids, args)


async def _drive_direct(
    work: str, url: str, nats_pid: int, args: argparse.Namespace
) -> tuple[Mode, Mode]:
    """Awaits the handler's work in this process, with no gRPC at all."""
    durable = await _make_work(work, url)
    if durable is None:
        raise SystemExit("a direct row needs a publish: direct:js1, direct:acked1...")
    return await _drive(durable, [nats_pid], args)


def _measure(stack: str, work: str, nats_url: str, nats_pid: int, args: argparse.Namespace) -> Row:
    import uvloop

    if stack == "direct":
        return Row(stack, work, *uvloop.run(_drive_direct(work, nats_url, nats_pid, args)))
    port = free_port(0)
    server = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(stack, work, port, nats_url), daemon=True
    )
    server.start()
    assert server.pid is not None
    try:
        sequential, inflight = uvloop.run(_drive_server(port, [server.pid, nats_pid], args))
    finally:
        server.terminate()
        server.join(10)
        if server.is_alive():
            server.kill()
            server.join()
    return Row(stack, work, sequential, inflight)


@contextmanager
def _nats_server() -> Iterator[tuple[str, int]]:
    """A nats-server with JetStream on file storage in a temporary folder: url and pid."""
    folder = Path(tempfile.mkdtemp(prefix="grpc-floors-"))
    port = free_port(0)
    config = folder / "nats.conf"
    config.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f'log_file: "{folder / "nats.log"}"\n'
        f'jetstream {{ store_dir: "{folder / "js"}" }}\n'
    )
    process = subprocess.Popen([find_nats_server(), "-c", str(config)])
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"nats-server did not start; see {folder / 'nats.log'}")
            time.sleep(0.05)
        url = f"nats://127.0.0.1:{port}"
        asyncio.run(_add_streams(url))
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


async def _add_streams(url: str) -> None:
    """The two streams, as Conveyor's: TASKS a work queue, EVENTS kept by limits."""
    import nats
    from nats.js.api import RetentionPolicy, StorageType, StreamConfig

    nc = await nats.connect(url)
    js = nc.jetstream()
    for name, subject in STREAMS.items():
        retention = RetentionPolicy.WORK_QUEUE if name == "FLOOR_TASKS" else RetentionPolicy.LIMITS
        await js.add_stream(
            StreamConfig(
                name=name, subjects=[subject], retention=retention, storage=StorageType.FILE
            )
        )
    await nc.close()


async def _stored(url: str) -> dict[str, int]:
    """How many messages each stream holds: every publish a handler awaited, stored."""
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    stored = {name: (await js.stream_info(name)).state.messages for name in STREAMS}
    await nc.close()
    return stored


_SEQUENTIAL = re.compile(r"sequential: p50 ([\d.]+) ms\s+p99 ([\d.]+) ms\s+rate (\d+)/s")
_INFLIGHT = re.compile(r"64 in flight: (\d+) calls/s")


def parse_peer_floor(output: str) -> dict[str, float]:
    """The figures ``benchmarks/peers/grpc_floor.py`` prints: p50 and p99 in ms and the
    rate one at a time, and the rate with 64 in flight; raises ValueError if absent."""
    sequential, inflight = _SEQUENTIAL.search(output), _INFLIGHT.search(output)
    if sequential is None or inflight is None:
        raise ValueError(f"grpc_floor.py printed no figures: {output.strip()[-300:]!r}")
    return {
        "p50_ms": float(sequential[1]),
        "p99_ms": float(sequential[2]),
        "rate": float(sequential[3]),
        "inflight_rate": float(inflight[1]),
    }


def _peer_floor() -> dict[str, float]:
    script = Path(__file__).parent / "peers" / "grpc_floor.py"
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False
    )
    return parse_peer_floor(done.stdout + done.stderr)


def _ms(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f} ms"


def _print(
    rows: list[Row],
    peer: dict[str, float] | None,
    load: str,
    stored: dict[str, int],
    args: argparse.Namespace,
) -> None:
    """One table; the ratios are to the first row one at a time (the bare grpc.aio call)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    base = rows[0].sequential
    table = Table(
        title=f"gRPC submit floors, median of {args.repeat} round(s): {args.calls:,} calls "
        "one at a time, "
        f"{args.inflight_calls:,} with {args.concurrency} in flight (load average at start {load})",
        box=box.MARKDOWN,
    )
    names = (
        "server",
        "handler",
        "p50",
        "p99",
        "calls/s",
        "server CPU",
        "nats CPU",
        "client CPU",
        f"{args.concurrency}-flight calls/s",
        f"{args.concurrency}-flight p50",
        f"{args.concurrency}-flight p99",
        f"{args.concurrency}-flight server CPU",
        "p50 / row 1",
        "p99 / row 1",
        "rate / row 1",
    )
    for name in names:
        table.add_column(name, justify="left" if name in ("server", "handler") else "right")
    for row in rows:
        s, f = row.sequential, row.inflight
        table.add_row(
            STACKS[row.stack],
            WORKS[row.work],
            _ms(s.p50_ms),
            _ms(s.p99_ms),
            f"{s.rate:,.0f}",
            _ms(s.server_cpu_ms),
            _ms(s.nats_cpu_ms),
            _ms(s.client_cpu_ms),
            f"{f.rate:,.0f}",
            _ms(f.p50_ms, 2),
            _ms(f.p99_ms, 2),
            _ms(f.server_cpu_ms),
            f"{s.p50_ms / base.p50_ms:.2f}x",
            f"{s.p99_ms / base.p99_ms:.2f}x",
            f"{s.rate / base.rate:.2f}x",
        )
    if peer is not None:
        table.add_row(
            "peers/grpc_floor.py",
            "health servicer",
            _ms(peer["p50_ms"]),
            _ms(peer["p99_ms"]),
            f"{peer['rate']:,.0f}",
            *["-"] * 3,
            f"{peer['inflight_rate']:,.0f}",
            *["-"] * 3,
            f"{peer['p50_ms'] / base.p50_ms:.2f}x",
            f"{peer['p99_ms'] / base.p99_ms:.2f}x",
            f"{peer['rate'] / base.rate:.2f}x",
        )
    table.caption = (
        "p50, p99, calls/s and CPU (per call: the server process, nats-server, this bench "
        "process) are one call at a time unless marked; messages stored: "
        + ", ".join(f"{name} {n:,}" for name, n in stored.items())
    )
    Console(width=None if sys.stdout.isatty() else 240).print(table)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls one at a time")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--inflight-calls", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--row",
        action="append",
        metavar="STACK:WORK",
        help=f"stack {sorted(STACKS)}, work {sorted(WORKS)}; the first is the reference "
        f"(default: {' '.join(DEFAULT_ROWS)})",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="measure every row this many times, in rounds, and show each figure's median",
    )
    parser.add_argument("--no-peer-floor", action="store_true", help="skip peers/grpc_floor.py")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    chosen = [tuple(r.split(":", 1)) for r in args.row or DEFAULT_ROWS]
    for item in chosen:
        if len(item) != 2 or item[0] not in STACKS or item[1] not in WORKS:
            parser.error(f"unknown row {':'.join(item)!r}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    samples: list[list[Row]] = [[] for _ in chosen]
    peers: list[dict[str, float]] = []
    with _nats_server() as (url, nats_pid):
        for round_ in range(args.repeat):
            if not args.no_peer_floor:
                print(f"round {round_ + 1}: peers/grpc_floor.py", file=sys.stderr)
                peers.append(_peer_floor())
            for (stack, work), taken in zip(chosen, samples, strict=True):
                print(f"round {round_ + 1}: {stack}:{work}", file=sys.stderr)
                taken.append(_measure(stack, work, url, nats_pid, args))
        stored = asyncio.run(_stored(url))
    rows = [median_row(taken) for taken in samples]
    peer = {k: statistics.median(p[k] for p in peers) for k in peers[0]} if peers else None
    if args.json:
        print(
            json.dumps(
                {
                    "load_average": load,
                    "rows": [asdict(r) for r in rows],
                    "peer_floor": peer,
                    "stored": stored,
                },
                indent=2,
            )
        )
    else:
        _print(rows, peer, load, stored, args)


if __name__ == "__main__":
    main()
