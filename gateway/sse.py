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

Each stream is a bare ASGI response (EventStream), served outside Starlette's middleware
(gateway.http): a burst of events to many streams costs one ``send`` per stream and
event, with nothing wrapped around it. A task's update is rendered once for every stream
watching that task.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

import grpc
from google.rpc import status_pb2
from starlette.requests import Request

from conveyor import transcode
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.auth.principal import Principal, bound
from conveyor.errors import FieldViolation, InvalidArgument
from conveyor.server import internal_error, status_for
from gateway.calls import CallFailed, status_of
from gateway.feeds import TaskFeeds
from gateway.watch import StoreWatches

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
KEEPALIVE_SECONDS = 15.0
"""Idle time after which a comment line is sent: proxies close connections that say nothing."""
KEEPALIVE = b": keepalive\n\n"
END = b"event: end\ndata: {}\n\n"
"""Sent when the task reached a terminal state: EventSource would reconnect otherwise."""
WATCHING = b": watching\n\n"
"""The many-task stream's first line, once the store watches: changes made after it are sent."""
RENDERED_KEPT = 1024
"""Task events kept rendered, for the other streams watching the same task."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Item = TypeVar("Item")


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
        self._rendered: dict[tuple[str, int, bool], bytes] = {}

    async def respond(self, message: Any, request: Request, principal: Principal) -> EventStream:
        """The event stream of a watch request, read as ``principal`` (the response is
        written after the door's call returns, so the caller is bound again there); raises
        ConveyorError or CallFailed when the watch cannot start (no such task, too many
        watches), for a JSON error."""
        if isinstance(message, tasks_pb2.WatchTasksRequest) and self._feeds is not None:
            return await self._many(message, principal)
        assert isinstance(message, tasks_pb2.WatchTaskRequest)
        after_version(message, request.headers.get("last-event-id"))
        tasks = self._watches.tasks(message, _StreamContext())
        try:
            first = await anext(tasks, None)
        except BaseException:
            await tasks.aclose()
            raise
        omit = message.omit_payloads
        lines = _event_lines(first, tasks, lambda task: self._task_event(task, omit), END)
        return EventStream(lines, principal)

    async def _many(
        self, message: tasks_pb2.WatchTasksRequest, principal: Principal
    ) -> EventStream:
        assert self._feeds is not None
        try:
            changes = await self._feeds.start(message.SerializeToString())
        except grpc.aio.AioRpcError as err:
            raise CallFailed(status_of(err)) from err
        lines = _event_lines(WATCHING, _failing_like_calls(changes), _change_event, b"")
        return EventStream(lines, principal)

    def _task_event(self, task: tasks_pb2.Task, omit_payloads: bool) -> bytes:
        """The event of ``task``, rendered once for every stream that gets it: a version of
        a task is always the same task (without its payloads when they are omitted)."""
        key = (task.id, task.version, omit_payloads)
        rendered = self._rendered.get(key)
        if rendered is None:
            rendered = event(b'{"task":' + _json(transcode.to_json(task)) + b"}", task.version)
            if len(self._rendered) >= RENDERED_KEPT:
                del self._rendered[next(iter(self._rendered))]  # the oldest
            self._rendered[key] = rendered
        return rendered


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


async def _event_lines(
    first: Item | None,
    updates: AsyncGenerator[Item, None],
    render: Callable[[Item], bytes],
    end: bytes,
) -> AsyncGenerator[bytes, None]:
    """``first`` then each update, rendered as events; ``end`` once the updates are over,
    a ``status`` event when they broke."""
    async with contextlib.aclosing(updates):
        try:
            item = first
            while item is not None:
                yield render(item)
                item = await anext(updates, None)
            if end:
                yield end
        except CallFailed as failed:  # the stream broke (store gone, reader too slow)
            yield _status_event(failed.status)
        except Exception as exc:  # logged once; the client gets a status event, not a hang
            yield _status_event(status_for(internal_error("an event stream", exc)))


def _status_event(status: status_pb2.Status) -> bytes:
    return event(_json(transcode.to_json(status)), name="status")


class EventStream:
    """An event stream as a bare ASGI response, with a keepalive comment after each
    KEEPALIVE_SECONDS without an event.

    Its events are written by a task of the stream's own, which waits for each update
    itself: an event costs one wake-up and one ``send``. The request's task waits for that
    task's end or the client's disconnect, waking every KEEPALIVE_SECONDS to send a
    keepalive when nothing was written meanwhile; a lock keeps the two from writing at
    once (a ``send`` waits while the client does not read)."""

    def __init__(self, lines: AsyncGenerator[bytes, None], principal: Principal) -> None:
        self._lines = lines
        self._principal = principal
        self._written = 0
        self._lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        except BaseException:
            await self._lines.aclose()
            raise
        with bound(self._principal):
            writer = asyncio.create_task(self._write(send), name="sse-events")
        gone = asyncio.create_task(_disconnect(receive), name="sse-disconnect")
        try:
            while True:
                written = self._written
                done, _ = await asyncio.wait(
                    (writer, gone), timeout=KEEPALIVE_SECONDS, return_when=asyncio.FIRST_COMPLETED
                )
                if done:
                    break
                if self._written == written and not self._lock.locked():
                    async with self._lock:
                        keepalive = {"type": "http.response.body", "body": KEEPALIVE}
                        await send({**keepalive, "more_body": True})
        finally:
            writer.cancel()
            gone.cancel()
            await asyncio.gather(writer, gone, return_exceptions=True)
        if writer.cancelled():
            return
        failure = writer.exception()
        if failure is not None and not isinstance(failure, OSError):  # OSError: the client left
            raise failure

    async def _write(self, send: Send) -> None:
        async with contextlib.aclosing(self._lines) as lines:
            async for chunk in lines:
                async with self._lock:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                self._written += 1
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _disconnect(receive: Receive) -> None:
    """Returns once the client has gone."""
    while (await receive())["type"] != "http.disconnect":
        pass
