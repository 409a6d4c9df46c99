"""Which services may call a server under mutual TLS: the store's own guard.

The handshake already refuses a caller without a certificate of the client CA; this
interceptor refuses a certificate of that CA which does not name an allowed service
identity (a DNS SAN, or the CN when there is none) with PERMISSION_DENIED. Health stays
open to any certificate of the CA, so a probe can present the service's own.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection
from typing import Any

import grpc
from grpc_health.v1 import health

from conveyor.interceptors import CachingInterceptor
from conveyor.tls import peer_names

OPEN_PREFIXES = (f"/{health.SERVICE_NAME}/",)


def refusal(context: grpc.aio.ServicerContext[Any, Any], allowed: Collection[str]) -> str:
    """Why the caller may not call, or "" when it may."""
    names = peer_names(context.auth_context())
    if names & set(allowed):
        return ""
    shown = ", ".join(sorted(names)) or "no identity"
    return f"the client certificate ({shown}) is not one of the services allowed here"


class PeerInterceptor(CachingInterceptor):
    """Answers PERMISSION_DENIED to a caller whose certificate names no allowed identity."""

    def __init__(self, allowed: Collection[str]) -> None:
        super().__init__()
        self.allowed = frozenset(allowed)

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if method.startswith(OPEN_PREFIXES):
            return handler
        for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            inner = getattr(handler, kind)
            if inner is not None:
                return handler._replace(**{kind: self._guard(inner)})
        return handler

    def _guard(self, inner: Any) -> Any:
        allowed = self.allowed

        if inspect.isasyncgenfunction(inner):

            async def streaming(request: Any, context: Any) -> Any:
                why = refusal(context, allowed)
                if why:
                    await context.abort(grpc.StatusCode.PERMISSION_DENIED, why)
                async for item in inner(request, context):
                    yield item

            return streaming

        async def unary(request: Any, context: Any) -> Any:
            why = refusal(context, allowed)
            if why:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, why)
            return await inner(request, context)

        return unary
