"""The gateway's methods as plain calls, for the HTTP door (gateway.http).

Each annotated method is reached the way its gRPC call is: the submits, schedules and
queues through the same servicer objects, everything the store answers through the same
channel the relay uses. No loopback gRPC call sits in between, and an error becomes the
``google.rpc.Status`` the gRPC client would have got.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.rpc import status_pb2

from conveyor.errors import ConveyorError
from conveyor.server import internal_error, status_for, unimplemented
from gateway.relay import STORE_CALL_TIMEOUT, store_metadata

log = logging.getLogger(__name__)

Call = Callable[[Message], Awaitable[Message]]


class CallFailed(Exception):
    """Raised when a call ends with a status other than OK; carries that status."""

    def __init__(self, status: status_pb2.Status) -> None:
        super().__init__(status.message)
        self.status = status


class _Context:
    """The little of grpc.aio.ServicerContext the servicers use, for calls without one."""

    def time_remaining(self) -> float | None:
        return None


def servicer_call(servicer: Any, method: MethodDescriptor) -> Call:
    """``method`` answered by the servicer object that serves it over gRPC."""
    handler = getattr(servicer, method.name)
    context = _Context()

    async def call(request: Message) -> Message:
        try:
            response: Message = await handler(request, context)
            return response
        except ConveyorError as exc:
            raise CallFailed(status_for(exc)) from exc
        except NotImplementedError as exc:
            raise CallFailed(status_for(unimplemented(method.full_name))) from exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise CallFailed(status_for(internal_error(method.full_name, exc))) from exc

    return call


def store_call(channel: grpc.aio.Channel, method: MethodDescriptor) -> Call:
    """``method`` answered by the store behind ``channel``, as gateway.relay passes it on."""
    response_class = message_factory.GetMessageClass(method.output_type)
    path = f"/{method.containing_service.full_name}/{method.name}"
    unary = channel.unary_unary(
        path,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_class.FromString,
        _registered_method=True,
    )

    async def call(request: Message) -> Message:
        try:
            response: Message = await unary(
                request, timeout=STORE_CALL_TIMEOUT, metadata=store_metadata()
            )
            return response
        except grpc.aio.AioRpcError as err:
            raise CallFailed(status_of(err)) from err

    return call


def status_of(err: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The rich status the store sent, details included, as gateway.relay passes it on."""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    details = err.details() or ""
    if err.code() == grpc.StatusCode.UNAVAILABLE:
        details = f"store unavailable: {details}"
    return status_pb2.Status(code=err.code().value[0], message=details)


def method_calls(
    methods: Iterable[MethodDescriptor],
    servicers: dict[str, Any],
    store: grpc.aio.Channel,
) -> dict[str, Call]:
    """A call by method full name: by the servicer registered for its service when it
    has the method, else by the store (the relayed part of TaskService)."""
    calls: dict[str, Call] = {}
    for method in methods:
        servicer = servicers.get(method.containing_service.full_name)
        if servicer is not None and hasattr(servicer, method.name):
            calls[method.full_name] = servicer_call(servicer, method)
        else:
            calls[method.full_name] = store_call(store, method)
    return calls
