"""The watches as Server-Sent Events: ``GET /v1/tasks/{task_id}:watch`` (WatchTask) and
``GET /v1/tasks:watch`` (WatchTasks, the changes of many tasks, for dashboards).

Each update is one event whose data is the response's JSON. A task's watch gives each
event the task's version as its ``id``, so a browser's EventSource resumes by itself
after a dropped connection (it sends ``Last-Event-ID``, taken as ``after_version``); the
many-task stream has no version to resume from, so its events carry none, and a client
that reconnects lists the tasks again. Both count against CONVEYOR_MAX_WATCHES, and a
slow reader is bounded as over gRPC (the response is written only as fast as the client
reads; a task's watch is restarted behind its reader from the history (gateway.watch),
the many-task stream is ended with a ``status`` event once the store's queue of it is
full (gateway.feeds)).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import grpc
from google.rpc import status_pb2
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from conveyor import transcode
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.auth.principal import Principal, bound
from conveyor.errors import FieldViolation, InvalidArgument
from conveyor.server import internal_error, status_for
from gateway.calls import CallFailed, status_of
from gateway.feeds import TaskFeeds
from gateway.watch import StoreWatches

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
KEEPALIVE_SECONDS = 15.0
"""Idle time after which a comment line is sent: proxies close connections that say nothing."""
KEEPALIVE = b": keepalive\n\n"
END = b"event: end\ndata: {}\n\n"
"""Sent when the task reached a terminal state: EventSource would reconnect otherwise."""
WATCHING = b": watching\n\n"
"""The many-task stream's first line, once the store watches: changes made after it are sent."""


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
    """Answers the watch routes with an event stream, or an error before it starts."""

    def __init__(self, watches: StoreWatches, feeds: TaskFeeds | None = None) -> None:
        self._watches = watches
        self._feeds = feeds

    async def respond(self, message: Any, request: Request, principal: Principal) -> Response:
        """The event stream of a watch request, read as ``principal`` (the response is
        written after the door's call returns, so the caller is bound again there); raises
        ConveyorError or CallFailed when the watch cannot start (no such task, too many
        watches), for a JSON error."""
        if isinstance(message, tasks_pb2.WatchTasksRequest) and self._feeds is not None:
            return await self._many(message, principal)
        assert isinstance(message, tasks_pb2.WatchTaskRequest)
        after_version(message, request.headers.get("last-event-id"))
        updates = self._watches.WatchTask(message, _StreamContext())
        try:
            first = await anext(updates, None)
        except BaseException:
            await updates.aclose()
            raise
        lines = _event_lines(first, updates, _task_event, END)
        return StreamingResponse(
            _events(lines, principal), media_type="text/event-stream", headers=HEADERS
        )

    async def _many(self, message: tasks_pb2.WatchTasksRequest, principal: Principal) -> Response:
        assert self._feeds is not None
        try:
            changes = await self._feeds.start(message.SerializeToString())
        except grpc.aio.AioRpcError as err:
            raise CallFailed(status_of(err)) from err
        lines = _event_lines(WATCHING, _failing_like_calls(changes), _change_event, b"")
        return StreamingResponse(
            _events(lines, principal), media_type="text/event-stream", headers=HEADERS
        )


def _task_event(data: bytes) -> bytes:
    response = tasks_pb2.WatchTaskResponse.FromString(data)
    return event(_json(transcode.to_json(response)), response.task.version)


def _change_event(data: bytes) -> bytes:
    if data == WATCHING:
        return WATCHING
    return event(_json(transcode.to_json(tasks_pb2.WatchTasksResponse.FromString(data))))


async def _failing_like_calls(
    changes: AsyncGenerator[bytes, None],
) -> AsyncGenerator[bytes, None]:
    """The store's stream, its error a CallFailed as a WatchTask's is."""
    async with contextlib.aclosing(changes):
        try:
            async for data in changes:
                yield data
        except grpc.aio.AioRpcError as err:
            raise CallFailed(status_of(err)) from err


async def _events(lines: AsyncGenerator[bytes, None], principal: Principal) -> AsyncIterator[bytes]:
    with bound(principal):
        async with contextlib.aclosing(lines):
            async for chunk in lines:
                yield chunk


async def _event_lines(
    first: bytes | None,
    updates: AsyncGenerator[bytes, None],
    render: Callable[[bytes], bytes],
    end: bytes,
) -> AsyncGenerator[bytes, None]:
    """``first`` then each update, rendered as events, with keepalives while idle; ``end``
    once the updates are over, a ``status`` event when they broke.

    The updates are read by a task of the stream's own into a queue of one (so nothing is
    read ahead of the client), and a second task puts a keepalive there when it finds it
    empty every KEEPALIVE_SECONDS: an event then costs a hand-over, not a task and a timer
    of its own, which add up when a thousand streams get an event at once."""
    queue: asyncio.Queue[bytes | CallFailed | None] = asyncio.Queue(1)
    helpers = [
        asyncio.create_task(_read_into(updates, queue), name="sse-updates"),
        asyncio.create_task(_keepalives(queue), name="sse-keepalive"),
    ]
    try:
        data = first
        while data is not None:
            yield render(data)
            item = await queue.get()
            while item is KEEPALIVE:
                yield KEEPALIVE
                item = await queue.get()
            if isinstance(item, CallFailed):
                raise item
            data = item
        if end:
            yield end
    except CallFailed as failed:  # the stream broke (store gone, reader too slow)
        yield event(_json(transcode.to_json(failed.status)), name="status")
    finally:
        for helper in helpers:
            helper.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        await updates.aclose()


async def _read_into(
    updates: AsyncGenerator[bytes, None], queue: asyncio.Queue[bytes | CallFailed | None]
) -> None:
    """Puts each update into ``queue``, then None at their end, or what broke them."""
    try:
        async for data in updates:
            await queue.put(data)
    except CallFailed as failed:
        await queue.put(failed)
        return
    except Exception as exc:  # logged once; the client gets a status event, not a hang
        await queue.put(CallFailed(status_for(internal_error("an event stream", exc))))
        return
    await queue.put(None)


async def _keepalives(queue: asyncio.Queue[bytes | CallFailed | None]) -> None:
    while True:
        await asyncio.sleep(KEEPALIVE_SECONDS)
        if queue.empty():
            queue.put_nowait(KEEPALIVE)
