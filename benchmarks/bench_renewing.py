"""What following certificate renewals costs a call to the store (conveyor.renewing).

    python -m benchmarks.bench_renewing [--calls 5000] [--rounds 3]

First the dispatch alone, in process: a ``RenewingChannel`` multicallable around a
function that does nothing, against that function called directly. Then real unary calls
over mutual TLS on loopback to an echo server, the way the gateway relays (bytes in,
bytes out, ``_registered_method``), 50 at once, through a plain ``grpc.aio`` secure
channel and through a ``RenewingChannel``, rounds interleaved: CPU time and wall time per
call of this process (client side; the server runs in it too, equally for both).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import timeit
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from conveyor.certs import LocalCA, service_identity
from conveyor.renewing import RenewingChannel, _Method
from conveyor.tls import CertificateFiles

PATH = "/bench.Echo/Call"
IN_FLIGHT = 50


def dispatch(calls: int) -> tuple[float, float]:
    """Nanoseconds per call: direct, and through a RenewingChannel multicallable."""

    def nothing(request: bytes, **kwargs: Any) -> bytes:
        return request

    class Holder:
        generation = 0
        current = type("C", (), {"unary_unary": staticmethod(lambda *a, **k: nothing)})()

    method = _Method(Holder(), "unary_unary", PATH, (), {})  # type: ignore[arg-type]
    direct = min(timeit.repeat(lambda: nothing(b"x", timeout=1.0), number=calls, repeat=5))
    wrapped = min(timeit.repeat(lambda: method(b"x", timeout=1.0), number=calls, repeat=5))
    return direct / calls * 1e9, wrapped / calls * 1e9


async def echo_server(ca: LocalCA) -> tuple[grpc.aio.Server, int]:
    issued = ca.issue("store", [service_identity("store"), "localhost", "127.0.0.1"])
    files = CertificateFiles(str(issued.cert), str(issued.key), str(ca.cert_path))

    async def call(request: bytes, context: object) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Call": grpc.unary_unary_rpc_method_handler(call)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port("127.0.0.1:0", files.server_credentials())
    await server.start()
    return server, port


async def run(call: Callable[..., Awaitable[bytes]], calls: int) -> tuple[float, float]:
    """CPU and wall microseconds per call, IN_FLIGHT calls at once."""
    left = calls

    async def caller() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call(b"x" * 100, timeout=10.0)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(IN_FLIGHT)))
    return (
        (time.process_time() - cpu) / calls * 1e6,
        (time.perf_counter() - wall) / calls * 1e6,
    )


async def calls_over_tls(calls: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    with tempfile.TemporaryDirectory() as folder:
        ca = LocalCA(Path(folder))
        server, port = await echo_server(ca)
        client = ca.issue("gateway", [service_identity("gateway")])
        files = CertificateFiles(str(client.cert), str(client.key), str(ca.cert_path))
        target = f"localhost:{port}"
        plain = grpc.aio.secure_channel(target, files.channel_credentials())
        renewing = RenewingChannel(target, files, [])
        multicallables = {
            "plain channel": plain.unary_unary(PATH, _registered_method=True),
            "RenewingChannel": renewing.unary_unary(PATH, _registered_method=True),
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in multicallables}
        for call in multicallables.values():
            await run(call, calls // 5)  # warm-up: connections, caches
        for _ in range(rounds):
            for name, call in multicallables.items():
                results[name].append(await run(call, calls))
        await plain.close()
        await renewing.close()
        await server.stop(0)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    direct, wrapped = dispatch(1_000_000)
    print("dispatch, in process (ns per call, best of 5 x 1,000,000)")
    print(f"  {'direct':<18}{direct:8.0f}")
    print(f"  {'RenewingChannel':<18}{wrapped:8.0f}   (+{wrapped - direct:.0f} ns)")
    results = asyncio.run(calls_over_tls(args.calls, args.rounds))
    print(f"\nunary calls over mutual TLS, {IN_FLIGHT} in flight ({args.calls} calls a round)")
    print(f"  {'channel':<18}{'CPU us/call':>12}{'wall us/call':>14}   (each round)")
    for name, rounds in results.items():
        cpu = " ".join(f"{c:.1f}" for c, _ in rounds)
        wall = " ".join(f"{w:.1f}" for _, w in rounds)
        best_cpu, best_wall = min(c for c, _ in rounds), min(w for _, w in rounds)
        print(f"  {name:<18}{best_cpu:12.1f}{best_wall:14.1f}   cpu {cpu} | wall {wall}")


if __name__ == "__main__":
    main()
