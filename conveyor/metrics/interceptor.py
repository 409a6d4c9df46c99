"""The gRPC interceptor counting and timing every call into a service's metrics."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any

import grpc

from conveyor.interceptors import CachingInterceptor
from conveyor.metrics.families import ServiceMetrics


class MetricsInterceptor(CachingInterceptor):
    """Counts every gRPC call by method and status code, and times unary calls.

    Installed before the ErrorInterceptor, so it sees the status that one chose.
    """

    def __init__(self, metrics: ServiceMetrics) -> None:
        super().__init__()
        self._metrics = metrics
        self._counters: dict[tuple[str, str], Any] = {}
        self._timers: dict[str, Any] = {}

    def wrap(self, handler: grpc.RpcMethodHandler, full_method: str) -> grpc.RpcMethodHandler:
        method = full_method.lstrip("/")
        for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            inner = getattr(handler, kind)
            if inner is not None:
                timed = kind == "unary_unary"
                return handler._replace(**{kind: self._wrap(inner, method, timed)})
        return handler

    def _wrap(self, inner: Any, method: str, timed: bool) -> Any:
        record = self._record

        if inspect.isasyncgenfunction(inner):

            async def streaming(request: Any, context: Any) -> Any:
                outcome: BaseException | None = None
                try:
                    async for item in inner(request, context):
                        yield item
                except BaseException as exc:
                    outcome = exc
                    raise
                finally:
                    record(method, context, outcome, None)

            return streaming

        async def call(request: Any, context: Any) -> Any:
            start = time.perf_counter()
            outcome: BaseException | None = None
            try:
                return await inner(request, context)
            except BaseException as exc:
                outcome = exc
                raise
            finally:
                record(method, context, outcome, time.perf_counter() - start if timed else None)

        return call

    def _record(
        self, method: str, context: Any, outcome: BaseException | None, elapsed: float | None
    ) -> None:
        code = _status_code(context, outcome)
        counter = self._counters.get((method, code))
        if counter is None:
            counter = self._counters[method, code] = self._metrics.grpc_requests.labels(
                method, code
            )
        counter.inc()
        if elapsed is not None:
            timer = self._timers.get(method)
            if timer is None:
                timer = self._timers[method] = self._metrics.grpc_duration.labels(method)
            timer.observe(elapsed)


def _status_code(context: Any, outcome: BaseException | None) -> str:
    """The status a call ended with: the one set on its context (abort sets it), else
    what its exception means."""
    try:
        code = context.code()
    except Exception:  # pragma: no cover - code() is experimental in grpc.aio
        code = None
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if isinstance(code, int) and not isinstance(code, bool):
        for status in grpc.StatusCode:
            if status.value[0] == code:
                return str(status.name)
    if outcome is None:
        return "OK"
    if isinstance(outcome, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    return "UNKNOWN"
