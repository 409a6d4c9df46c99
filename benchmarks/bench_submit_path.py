"""The gateway's own Python per unary ``SubmitTask``, without gRPC's core or NATS: CPU
microseconds per call, in this process, of

- ``interceptors``: the chain every Conveyor server runs (``conveyor.server.
  server_interceptors``: tracing, metrics, errors, auth, here with authentication off as
  in ``conveyor dev``), run as grpc.aio runs it (each interceptor's ``intercept_service``,
  then the wrapped handler), around a handler that answers at once;
- ``submit``: ``GatewayService.SubmitTask`` alone: the request parsed, validated, the task
  and its two messages built, the response serialised; publishing returns at once;
- ``both``: the chain around ``SubmitTask``, what a call costs the gateway's Python.

    python -m benchmarks.bench_submit_path [--calls 5000] [--rounds 7]

The request is the one ``conveyor bench`` sends (a ``noop`` custom task with two labels).
Each figure is the fastest of ``--rounds`` rounds (the least disturbed by other load), by
``time.process_time``, on uvloop. Tracing is set up as in a service with no exporter.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import grpc
import uvloop

from conveyor import tracing
from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.auth.authenticate import Authenticator
from conveyor.client import custom
from conveyor.config import Limits
from conveyor.intake.catalog import TypeCatalog
from conveyor.intake.submit import Submitter
from conveyor.metrics import GatewayMetrics
from conveyor.publish import AckedPublisher
from conveyor.server import server_interceptors
from gateway.service import GatewayService

METHOD = "/conveyor.api.tasks.v1.TaskService/SubmitTask"


class _Catalog:
    """Knows every type, as a catalog whose watch has seen the worker's registration."""

    def __init__(self) -> None:
        self._spec = events_pb2.TaskTypeSpec(max_attempts=3)

    async def get(self, name: str) -> events_pb2.TaskTypeSpec:
        return self._spec


class _Publisher:
    """Stores nothing and answers at once: what is left is the gateway's own work."""

    max_payload = 1024 * 1024

    async def publish_all(self, messages: Sequence[Any]) -> None:
        return None

    async def publish_each(self, messages: Sequence[Any]) -> list[BaseException | None]:
        return [None] * len(messages)


class _Context:
    """What the interceptors read of a grpc.aio servicer context."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("user-agent", "grpc-python-asyncio/1.7"),)

    def code(self) -> None:
        return None


Handler = Callable[[Any, Any], Awaitable[Any]]


def _chain(
    interceptors: list[Any], handler: grpc.RpcMethodHandler
) -> Callable[[], Awaitable[grpc.RpcMethodHandler]]:
    """grpc.aio's lookup of a call's handler through its interceptors."""
    details = cast(grpc.HandlerCallDetails, _Details())

    async def run(index: int, call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        if index == len(interceptors):
            return handler
        continuation = functools.partial(run, index + 1)
        result: grpc.RpcMethodHandler = await interceptors[index].intercept_service(
            continuation, call_details
        )
        return result

    return functools.partial(run, 0, details)


class _Details:
    method = METHOD
    invocation_metadata = (("user-agent", "grpc-python-asyncio/1.7"),)


def _service() -> GatewayService:
    submitter = Submitter(
        cast(Any, None),
        cast(TypeCatalog, _Catalog()),
        cast(Any, None),
        None,
        cast(AckedPublisher, _Publisher()),
    )
    return GatewayService(submitter, Limits(), GatewayMetrics())


async def _per_call(call: Callable[[], Awaitable[None]], calls: int, rounds: int) -> float:
    for _ in range(min(calls, 500)):
        await call()
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(calls):
            await call()
        best = min(best, (time.process_time() - started) / calls)
    return best * 1e6


async def measure(calls: int, rounds: int) -> dict[str, float]:
    """Microseconds of CPU per call of each part."""
    service = _service()
    request = custom("noop", {}, labels={"bench_run": "x" * 22, "bench_scenario": "unary"})
    data = request.SerializeToString()
    context = _Context()

    async def answer(request: Any, context: Any) -> bytes:
        return b""

    def handler(method: Handler) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            method,
            request_deserializer=tasks_pb2.SubmitTaskRequest.FromString,
            response_serializer=tasks_pb2.SubmitTaskResponse.SerializeToString,
        )

    def through(method: Handler) -> Callable[[], Awaitable[None]]:
        lookup = _chain(
            server_interceptors(GatewayMetrics(), authenticator=Authenticator()), handler(method)
        )

        async def call() -> None:
            found = await lookup()
            response = await found.unary_unary(found.request_deserializer(data), context)
            if response != b"":
                found.response_serializer(response)

        return call

    async def submit() -> None:
        parsed = tasks_pb2.SubmitTaskRequest.FromString(data)
        response = await service.SubmitTask(parsed, context)
        response.SerializeToString()

    return {
        "interceptors": await _per_call(through(answer), calls, rounds),
        "submit": await _per_call(submit, calls, rounds),
        "both": await _per_call(through(service.SubmitTask), calls, rounds),
    }


def main() -> None:
    """Prints a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    tracing.setup_tracing("gateway", {})
    figures = uvloop.run(measure(args.calls, args.rounds))
    print("| part | CPU per call |")
    print("|---|---:|")
    for name, micros in figures.items():
        print(f"| {name} | {micros:.1f} µs |")


if __name__ == "__main__":
    main()
