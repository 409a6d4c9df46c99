"""Helpers of the HTTP door's tests: a system with the door open, and calls both ways."""

from __future__ import annotations

from typing import Any, TypeVar

import grpc
import httpx
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import status_pb2
from grpc_status import rpc_status

from tests.conftest import System

M = TypeVar("M", bound=Message)


async def start_with_http(system: System, **options: object) -> httpx.AsyncClient:
    """Starts the system with the gateway's HTTP door on a free port; a client of it."""
    await system.start_store()
    await system.start_worker()
    await system.start_gateway(http_listen="127.0.0.1:0", **options)
    assert system.gateway is not None
    return httpx.AsyncClient(base_url=f"http://{system.gateway.http.address}", timeout=30)


def parsed(response: httpx.Response, message: type[M]) -> M:
    """The response's JSON as ``message``, refusing unknown fields (a wrong shape fails)."""
    assert response.status_code == 200, response.text
    return json_format.Parse(response.content, message())


def http_status(response: httpx.Response) -> status_pb2.Status:
    """The google.rpc.Status of an HTTP error answer."""
    assert response.headers["content-type"] == "application/json"
    return json_format.Parse(response.content, status_pb2.Status())


def grpc_status(err: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The rich status of a failed gRPC call (code and message when it has no details)."""
    status = rpc_status.from_call(err)
    if status is None:
        return status_pb2.Status(code=err.code().value[0], message=err.details() or "")
    found: status_pb2.Status = status
    return found


def json_of(message: Message) -> dict[str, Any]:
    """Canonical JSON of ``message`` as a dict."""
    return json_format.MessageToDict(message)
