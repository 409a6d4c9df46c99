"""Namespaces between services: the metadata a call carries its namespace in, and the
binding of it for the call's duration on the side that answers.

The gateway tells the store which namespace each relayed call is made in (the caller's,
as the gateway's authentication bound it) with the ``conveyor-namespace`` metadata, and
the store binds it per call (:class:`NamespaceInterceptor`), so every read and control
it answers is limited to it. The store takes the metadata as it comes: only the
authenticated services (gateway, scheduler) may reach it (mutual TLS; docs/security.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import grpc

from conveyor.auth.principal import (
    DEFAULT_NAMESPACE,
    METADATA_NAMESPACE,
    Principal,
    bound,
    check_namespace,
    current_namespace,
    current_principal,
)
from conveyor.interceptors import CachingInterceptor

ALL_NAMESPACES = "*"
"""The namespace of the scheduler's reconciliation, which looks at every task: the store
accepts it from its callers; the gateway never sends it (it is not a valid name, so no
client can ask for it)."""


def namespace_metadata() -> tuple[tuple[str, str], ...]:
    """The current namespace as call metadata, for a call to the store."""
    return ((METADATA_NAMESPACE, current_namespace()),)


def requested_namespace(metadata: Iterable[tuple[str, Any]] | None, allow_all: bool) -> str:
    """The namespace named by a call's metadata (``default`` when it names none);
    INVALID_ARGUMENT for a name that is not a DNS label (``*`` only with ``allow_all``)."""
    for key, value in metadata or ():
        if key == METADATA_NAMESPACE:
            text = value.decode() if isinstance(value, bytes) else str(value)
            return namespace_or_default(text, allow_all, METADATA_NAMESPACE)
    return DEFAULT_NAMESPACE


def namespace_or_default(text: str, allow_all: bool = False, field: str = "namespace") -> str:
    """``text`` as a namespace ("" is ``default``); INVALID_ARGUMENT naming ``field`` for
    a name that is not a DNS label (``*`` only with ``allow_all``)."""
    if not text:
        return DEFAULT_NAMESPACE
    if allow_all and text == ALL_NAMESPACES:
        return text
    return check_namespace(text, field)


@contextlib.contextmanager
def in_namespace(namespace: str) -> Iterator[Principal]:
    """Makes the current caller act in ``namespace`` inside the ``with`` block (the
    scheduler, for a schedule's ticks; the store, for a relayed call)."""
    with bound(dataclasses.replace(current_principal(), namespace=namespace)) as principal:
        yield principal


def visible(namespace: str) -> bool:
    """Whether something of ``namespace`` ("" is the default) is visible to the caller."""
    current = current_namespace()
    return current == ALL_NAMESPACES or current == (namespace or DEFAULT_NAMESPACE)


class NamespaceInterceptor(CachingInterceptor):
    """Binds each call's namespace, from its ``conveyor-namespace`` metadata, around its
    handler. Installed inside the error interceptor, so a bad name answers
    INVALID_ARGUMENT. Client-streaming calls (the store's watch multiplexer) carry the
    namespace of each watch in its request and are left as they are."""

    def __init__(self, allow_all: bool = False) -> None:
        super().__init__()
        self._allow_all = allow_all

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        allow_all = self._allow_all
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request: Any, context: Any) -> Any:
                namespace = requested_namespace(context.invocation_metadata(), allow_all)
                with in_namespace(namespace):
                    return await inner(request, context)

            return handler._replace(unary_unary=unary)
        if handler.unary_stream is not None and inspect.isasyncgenfunction(handler.unary_stream):
            streamed = handler.unary_stream

            async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
                namespace = requested_namespace(context.invocation_metadata(), allow_all)
                with in_namespace(namespace):
                    async for item in streamed(request, context):
                        yield item

            return handler._replace(unary_stream=stream)
        return handler
