"""The CPU a bare grpc.aio server spends per unary call, at a given call rate: the floor
under the gateway's CPU per ``SubmitTask`` (``conveyor bench --pid``'s "CPU/task gateway").

    python -m benchmarks.bench_grpc_floor_cpu [--rate 300 --rate 0] [--calls 3000]

The server (uvloop, ``grpc.health.v1.Health/Check``, as the peers harness's
``grpc_floor.py``) runs in a child process; the client makes one call at a time, paced at
``--rate`` calls/s (0: back to back), after 300 warm-up calls. Server CPU is read from
``/proc/<pid>/stat`` around the timed calls. gRPC's cost per call grows as the rate falls
(fewer completions per wake-up), so compare at the rate the gateway was measured at.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import time

from conveyor.bench._proc import cpu_seconds

WARMUP = 300


def _serve(port: int) -> None:
    import grpc
    import uvloop
    from grpc_health.v1 import health, health_pb2_grpc

    async def main() -> None:
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    uvloop.run(main())


async def _calls(port: int, pid: int, rate: float, calls: int) -> tuple[float, float, float]:
    """Server CPU ms per call, the rate reached, and the p50 latency in ms."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest()
        await channel.channel_ready()
        for _ in range(WARMUP):
            await stub.Check(request)
        gap = 1.0 / rate if rate > 0 else 0.0
        seconds: list[float] = []
        before = cpu_seconds(pid)
        started = next_at = time.perf_counter()
        for _ in range(calls):
            begin = time.perf_counter()
            await stub.Check(request)
            seconds.append(time.perf_counter() - begin)
            next_at += gap
            pause = next_at - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
        elapsed = time.perf_counter() - started
        used = cpu_seconds(pid) - before
    seconds.sort()
    return used / calls * 1000.0, calls / elapsed, seconds[len(seconds) // 2] * 1000.0


def main() -> None:
    """Prints a Markdown table: one row per rate."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, action="append", metavar="PER_S")
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(port,))
    server.start()
    assert server.pid is not None
    try:
        print("| paced at | reached calls/s | call p50 | server CPU per call |")
        print("|---:|---:|---:|---:|")
        for rate in args.rate or [300.0, 0.0]:
            per_call, reached, p50 = asyncio.run(_calls(port, server.pid, rate, args.calls))
            paced = f"{rate:,.0f}/s" if rate > 0 else "back to back"
            print(f"| {paced} | {reached:,.0f} | {p50:.3f} ms | {per_call:.3f} ms |")
    finally:
        server.terminate()
        server.join(10)


if __name__ == "__main__":
    main()
