"""WatchTask as Server-Sent Events: ``GET /v1/tasks/{task_id}:watch``.

Each update is one event whose ``id`` is the task's version and whose data is the
WatchTaskResponse JSON, so a browser's EventSource resumes by itself after a dropped
connection (it sends ``Last-Event-ID``, taken as ``after_version``). The watch runs on the
gateway's shared call to the store (gateway.watch), the same as a gRPC WatchTask: it counts
against CONVEYOR_MAX_WATCHES, and a slow reader is bounded the same way (the response is
written only as fast as the client reads, and the store-side queue of a watch is capped
and restarted behind the reader, never grown).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import grpc
from google.rpc import status_pb2
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from conveyor import transcode
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.auth.principal import Principal, bound
from conveyor.errors import FieldViolation, InvalidArgument
from gateway.calls import CallFailed
from gateway.watch import StoreWatches

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
KEEPALIVE_SECONDS = 15.0
"""Idle time after which a comment line is sent: proxies close connections that say nothing."""
KEEPALIVE = b": keepalive\n\n"
END = b"event: end\ndata: {}\n\n"
"""Sent when the task reached a terminal state: EventSource would reconnect otherwise."""


class _StreamContext:
    """What StoreWatches needs of a gRPC context: its aborts become CallFailed."""

    def time_remaining(self) -> float | None:
        return None

    async def abort(self, code: grpc.StatusCode, details: str = "", metadata: Any = ()) -> None:
        raise CallFailed(_status(code.value[0], details, metadata))

    async def abort_with_status(self, status: Any) -> None:
        raise CallFailed(_status(status.code.value[0], status.details, status.trailing_metadata))


def _status(code: int, details: str, metadata: Any) -> status_pb2.Status:
    for key, value in metadata or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return status_pb2.Status(code=code, message=details)


def after_version(request: tasks_pb2.WatchTaskRequest, last_event_id: str | None) -> None:
    """Takes ``Last-Event-ID`` (a version) as ``after_version`` when the query set none."""
    if last_event_id is None or request.after_version:
        return
    if not last_event_id.strip().isdigit():
        raise InvalidArgument.for_fields(
            [FieldViolation("Last-Event-ID", "must be a task version (a whole number)")]
        )
    request.after_version = int(last_event_id)


def event(data: bytes, event_id: int | None = None, name: str = "") -> bytes:
    """One SSE event; ``data`` is one line of JSON."""
    head = (f"id: {event_id}\n" if event_id is not None else "") + (
        f"event: {name}\n" if name else ""
    )
    return head.encode() + b"data: " + data + b"\n\n"


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class TaskStreams:
    """Answers the watch route with an event stream, or an error before it starts."""

    def __init__(self, watches: StoreWatches) -> None:
        self._watches = watches

    async def respond(self, message: Any, request: Request, principal: Principal) -> Response:
        """The event stream of a watch request, read as ``principal`` (the response is
        written after the door's call returns, so the caller is bound again there); raises
        ConveyorError or CallFailed when the watch cannot start (no such task, too many
        watches), for a JSON error."""
        assert isinstance(message, tasks_pb2.WatchTaskRequest)
        after_version(message, request.headers.get("last-event-id"))
        updates = self._watches.WatchTask(message, _StreamContext())
        try:
            first = await anext(updates, None)
        except BaseException:
            await updates.aclose()
            raise
        return StreamingResponse(
            _events(first, updates, principal), media_type="text/event-stream", headers=HEADERS
        )


async def _events(
    first: bytes | None, updates: AsyncGenerator[bytes, None], principal: Principal
) -> AsyncIterator[bytes]:
    with bound(principal):
        async with contextlib.aclosing(_event_lines(first, updates)) as lines:
            async for chunk in lines:
                yield chunk


async def _event_lines(
    first: bytes | None, updates: AsyncGenerator[bytes, None]
) -> AsyncGenerator[bytes, None]:
    pending: asyncio.Future[bytes | None] | None = None
    try:
        data = first
        while data is not None:
            response = tasks_pb2.WatchTaskResponse.FromString(data)
            yield event(_json(transcode.to_json(response)), response.task.version)
            pending = asyncio.ensure_future(anext(updates, None))
            while not (await asyncio.wait({pending}, timeout=KEEPALIVE_SECONDS))[0]:
                yield KEEPALIVE
            data, pending = pending.result(), None
        yield END
    except CallFailed as failed:  # the stream broke (store gone): the client resumes
        yield event(_json(transcode.to_json(failed.status)), name="status")
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        await updates.aclose()
