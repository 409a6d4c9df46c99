"""The gateway's gRPC door check: each call authenticated and authorized before its
handler runs, and its principal bound for the whole call (streams included)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import grpc

from conveyor.auth.authenticate import Authenticator
from conveyor.auth.principal import (
    METADATA_AUTHORIZATION,
    METADATA_NAMESPACE,
    Principal,
    bind,
    bound,
    unbind,
)
from conveyor.errors import ConveyorError
from conveyor.interceptors import CachingInterceptor

Context = Any  # grpc.aio.ServicerContext; grpc ships no type information


async def _principal(authenticator: Authenticator, context: Context, method: str) -> Principal:
    authorization = namespace = None
    for key, value in context.invocation_metadata() or ():
        if key == METADATA_AUTHORIZATION:
            authorization = value
        elif key == METADATA_NAMESPACE:
            namespace = value
    return await authenticator.principal(authorization, namespace, method)


class AuthInterceptor(CachingInterceptor):
    """Runs inside the error interceptor, which answers the ConveyorError it raises
    (UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT for a malformed namespace);
    client streams (reflection), which that one leaves alone, are answered here."""

    def __init__(self, authenticator: Authenticator) -> None:
        super().__init__()
        self.authenticator = authenticator

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        auth = self.authenticator
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=_unary(auth, handler.unary_unary, method))
        if handler.unary_stream is not None:
            inner = handler.unary_stream
            if inspect.isasyncgenfunction(inner):
                return handler._replace(unary_stream=_stream(auth, inner, method))
            # A handler that streams with context.write (Health.Watch) is a coroutine.
            return handler._replace(unary_stream=_unary(auth, inner, method))
        if handler.stream_stream is not None:
            return handler._replace(stream_stream=_bidi(auth, handler.stream_stream, method))
        return handler._replace(stream_unary=_client_stream(auth, handler.stream_unary, method))


def _unary(auth: Authenticator, inner: Any, method: str) -> Any:
    async def unary(request: Any, context: Context) -> Any:
        token = bind(await _principal(auth, context, method))
        try:
            return await inner(request, context)
        finally:
            unbind(token)

    return unary


def _stream(auth: Authenticator, inner: Any, method: str) -> Any:
    async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
        with bound(await _principal(auth, context, method)):
            async for item in inner(request, context):
                yield item

    return stream


async def _checked(auth: Authenticator, context: Context, method: str) -> Principal:
    """The principal, or the call aborted with the error's code (no error interceptor
    wraps client streams)."""
    try:
        return await _principal(auth, context, method)
    except ConveyorError as exc:
        await context.abort(exc.code, exc.message)
        raise  # unreachable: abort raises


def _bidi(auth: Authenticator, inner: Any, method: str) -> Any:
    async def bidi(requests: Any, context: Context) -> AsyncIterator[Any]:
        with bound(await _checked(auth, context, method)):
            result = inner(requests, context)
            if hasattr(result, "__aiter__"):
                async for item in result:
                    yield item
            else:
                await result  # a handler that streams with context.write

    return bidi


def _client_stream(auth: Authenticator, inner: Any, method: str) -> Any:
    async def client_stream(requests: Any, context: Context) -> Any:
        with bound(await _checked(auth, context, method)):
            return await inner(requests, context)

    return client_stream
