"""The base of Conveyor's gRPC server interceptors (errors, metrics, tracing)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc


class CachingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """A server interceptor that wraps each method's handler once, not on every call: grpc
    asks interceptors for the handler of every call, and the lookup returns the same
    handler object each time, so the wrapped one is kept per method and reused while the
    inner handler stays the same object."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return None  # unknown method: nothing cached for names clients make up
        cached = self._wrapped.get(details.method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self.wrap(handler, details.method)
        self._wrapped[details.method] = (handler, wrapped)
        return wrapped

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        """The handler to use in place of ``handler`` for calls of ``method``."""
        raise NotImplementedError
