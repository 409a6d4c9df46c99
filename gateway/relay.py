"""The store's side of TaskService, relayed as serialized messages.

The store answers reads and control itself (docs/architecture.md), so the gateway has
nothing to do with their responses but pass them on. Relaying the store's bytes instead
of going through a generated stub saves a parse and a serialization of every response
(a `ListTasks` page above all), which is most of what a relayed call costs the gateway's
Python. Watches are not relayed one by one but share one call (gateway.watch). Requests
are still parsed, only to refuse an undecodable one at the gateway; the bytes forwarded
are the client's own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor

from conveyor import tracing
from conveyor.auth.namespaces import namespace_metadata

Context = Any  # grpc.aio.ServicerContext; grpc ships no type information
STORE_CALL_TIMEOUT = 10.0
"""How long a relayed store call may take when its caller set no deadline; a caller's
deadline is passed on as it is (GetTaskStats over a large window can take longer)."""


def relay_handlers(
    channel: grpc.aio.Channel, methods: Iterable[MethodDescriptor]
) -> dict[str, grpc.RpcMethodHandler]:
    """Method handlers, by method name, that pass each call of ``methods`` to the service
    of the same name behind ``channel`` and its answer back untouched: the responses are
    never parsed (no response serializer or deserializer on either side), and the
    store's status, message and details reach the client as the store sent them."""
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for method in methods:
        if method.client_streaming:
            raise ValueError(f"{method.full_name}: client streams are not relayed")
        path = f"/{method.containing_service.full_name}/{method.name}"
        if method.server_streaming:
            stream = channel.unary_stream(path, _registered_method=True)
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                _relay_stream(stream), request_deserializer=parses_as(method)
            )
            continue
        unary = channel.unary_unary(path, _registered_method=True)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _relay_unary(unary), request_deserializer=parses_as(method)
        )
    return handlers


def parses_as(method: MethodDescriptor) -> Callable[[bytes], bytes]:
    """A request deserializer that checks the bytes are the method's request message and
    returns them as they came: the server's error interceptor turns a failed parse into
    INVALID_ARGUMENT, as for any other method, and nothing undecodable goes to the store."""
    parse = message_factory.GetMessageClass(method.input_type).FromString

    def check(data: bytes) -> bytes:
        parse(data)
        return data

    return check


def _relay_unary(
    call: Callable[..., Awaitable[bytes]],
) -> Callable[[bytes, Context], Awaitable[bytes]]:
    async def relay(request: bytes, context: Context) -> bytes:
        try:
            remaining = context.time_remaining()
            timeout = STORE_CALL_TIMEOUT if remaining is None else max(remaining, 0.0)
            return await call(request, timeout=timeout, metadata=store_metadata())
        except grpc.aio.AioRpcError as err:
            await abort_like(context, err)
            raise  # unreachable: abort raises

    return relay


def _relay_stream(
    call: grpc.aio.UnaryStreamMultiCallable,
) -> Callable[[bytes, Context], AsyncIterator[bytes]]:
    async def relay(request: bytes, context: Context) -> AsyncIterator[bytes]:
        # No default deadline: a stream (a large download) lasts as long as its reader needs.
        relayed = call(request, timeout=context.time_remaining(), metadata=store_metadata())
        try:
            async for response in relayed:
                yield response
        except grpc.aio.AioRpcError as err:
            await abort_like(context, err)
        finally:
            relayed.cancel()  # the client went away: so does the store's side

    return relay


def store_metadata() -> tuple[tuple[str, str], ...]:
    """The metadata of a call to the store: the caller's namespace, which the store limits
    the call to (conveyor.auth.namespaces), and the current trace context, so the store's
    span joins the caller's trace. Sent by hand, not by client interceptors on the
    channel: grpc.aio's intercepted calls cost several times a plain call's CPU."""
    return (*namespace_metadata(), *tracing.inject().items())


async def abort_like(context: Context, err: grpc.aio.AioRpcError) -> None:
    """Ends the call with the store's status, details included, so clients see its reason."""
    metadata = tuple(
        (key, value)
        for key, value in (err.trailing_metadata() or ())
        if key == "grpc-status-details-bin"
    )
    details = err.details() or ""
    if err.code() == grpc.StatusCode.UNAVAILABLE:
        details = f"store unavailable: {details}"
    await context.abort(err.code(), details, metadata)
