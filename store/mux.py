"""WatchMuxService: a gateway's WatchTask streams over one call (docs/architecture.md).

Each watch started on the call runs what WatchTask runs (``StoreService.updates``) in a
task of its own, and the call writes what they have as few messages: a burst of changes
to a thousand watched tasks is a handful of gRPC messages to the gateway instead of one
per update. Updates are written as bytes, each serialized once (once per version for all
the watches of a task that share the same options), straight into the message.

A watch's task puts what it reads itself (its task's current state, the history) into a
bounded outbox. Once it waits for the next change with nothing left to read, the call's
writer takes the changes the hub hands its subscription itself (``Subscription.take``),
without waking the watch's task for each: an update then costs no task switch, only
the writer's one per batch. The writer takes them only when the outbox is empty, so they
never overtake what the watch put there before. A gap or an overflow wakes the watch's
task, which re-reads what it missed from the history, as WatchTask does, so nothing is
lost; while the writer is busy writing, the subscriptions fill and may overflow so.

No message may exceed what both ends accept (the store's own limit, or the smaller one the
gateway sends in the call's metadata): a message too big for gRPC would end the call,
and with it every watch on it. So updates are packed up to that size, and a single update
too big to send ends its own watch RESOURCE_EXHAUSTED while the others go on.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.rpc import status_pb2

from conveyor import subjects
from conveyor.api.store.v1 import watch_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.auth.namespaces import in_namespace, namespace_or_default
from conveyor.errors import ConveyorError, InvalidArgument, ResourceExhausted
from conveyor.server import internal_error, status_for
from conveyor.tasks import is_terminal
from conveyor.wire import length_delimited, varint
from store.service import StoreService
from store.watch import Subscription

log = logging.getLogger(__name__)

Context = Any  # grpc.aio.ServicerContext; grpc ships no type information
OUTBOX_SIZE = 4096
"""Updates the watches' own tasks may have waiting to be written, all together."""
MESSAGE_BYTES = 1024 * 1024
"""A message is closed once it holds this much (one bigger update goes alone)."""
_OK = status_pb2.Status(code=0).SerializeToString()


class _Outbox:
    """What the call's writer has to write: updates the watches' tasks put, each as its
    bytes within a WatchTasksResponse (field 1, framed), and the parked watches whose
    subscriptions have changes for the writer to take."""

    def __init__(self) -> None:
        self.items: collections.deque[bytes] = collections.deque()
        self.ready: dict[int, tuple[Subscription, bool]] = {}
        """Watch id: its subscription and whether it omits payloads."""
        self.wake = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()

    async def put(self, item: bytes) -> None:
        while len(self.items) >= OUTBOX_SIZE:
            self._space.clear()
            await self._space.wait()
        self.items.append(item)
        self.wake.set()

    def popleft(self) -> bytes:
        self._space.set()
        return self.items.popleft()

    def listener(self, watch_id: int, omit_payloads: bool) -> Callable[[Subscription], None]:
        """What a parked watch's subscription calls when the hub hands it a change."""

        def changed(subscription: Subscription) -> None:
            self.ready[watch_id] = (subscription, omit_payloads)
            self.wake.set()

        return changed


class WatchMux:
    """Runs the watches the caller starts and stops, and batches their updates."""

    def __init__(self, service: StoreService, max_message_bytes: int) -> None:
        self._service = service
        self._max_message_bytes = max_message_bytes

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        """The service's method handlers: its responses are written as the bytes the
        writer makes, with no serializer (the generated servicer would serialize them)."""
        return {
            "WatchTasks": grpc.stream_stream_rpc_method_handler(
                self.WatchTasks, request_deserializer=watch_pb2.WatchTasksRequest.FromString
            )
        }

    def _message_limit(self, context: Context) -> int:
        """The largest message both sides of the call accept."""
        limit = self._max_message_bytes
        for key, value in context.invocation_metadata() or ():
            if key == subjects.MAX_MESSAGE_METADATA and value.isdigit():
                limit = min(limit, int(value))
        return limit

    async def WatchTasks(
        self, requests: AsyncIterator[watch_pb2.WatchTasksRequest], context: Context
    ) -> AsyncIterator[bytes]:
        """Serialized WatchTasksResponses."""
        outbox = _Outbox()
        watches: dict[int, asyncio.Task[None]] = {}
        limit = self._message_limit(context)
        reader = asyncio.create_task(self._read(requests, watches, outbox, limit))
        try:
            while True:
                while not outbox.items and not outbox.ready:
                    outbox.wake.clear()
                    await outbox.wake.wait()
                message = self._message(outbox, watches, limit)
                if message:
                    yield message
        finally:
            for watch in [reader, *watches.values()]:
                watch.cancel()
            await asyncio.gather(reader, *watches.values(), return_exceptions=True)

    def _message(
        self, outbox: _Outbox, watches: dict[int, asyncio.Task[None]], limit: int
    ) -> bytes:
        """The next message: what the outbox holds first, then (once it is empty) the
        changes the parked watches can take, up to the size limit."""
        chunks: list[bytes] = []
        size = 0
        while outbox.items:
            item = outbox.items[0]
            if chunks and (size + len(item) > limit or size >= MESSAGE_BYTES):
                return b"".join(chunks)  # the rest goes in the next message
            chunks.append(outbox.popleft())
            size += len(item)
        ready, outbox.ready = outbox.ready, {}
        # Each version once for all its watches: the hub hands them the same Task. The
        # Task is kept with its bytes, so that its id is not reused within the pass.
        serialized: dict[tuple[int, bool], tuple[tasks_pb2.Task, bytes]] = {}
        pending = iter(ready.items())
        for watch_id, (subscription, omit) in pending:
            while subscription.takeable and (task := subscription.take()) is not None:
                key = (id(task), omit)
                cached = serialized.get(key)
                if cached is None:
                    data = self._service.as_watched(task, omit).SerializeToString()
                    serialized[key] = (task, data)
                else:
                    data = cached[1]
                item = _task_item(watch_id, data)
                if len(item) > limit:
                    # Ended here, as its task would have: stopped, with its reason.
                    subscription.finished = True
                    watch = watches.pop(watch_id, None)
                    if watch is not None:
                        watch.cancel()
                    chunks.append(_end_item(watch_id, status_for(_too_big(task, len(item), limit))))
                    break
                if is_terminal(task.state):
                    # The watch ends with it, in the same message: its task ends quietly
                    # (see _run), and the gateway has no need to stop it.
                    item += _end_item(watch_id)
                    subscription.finished = True
                    subscription.wakeup.set()
                    watches.pop(watch_id, None)
                if chunks and (size + len(item) > limit or size >= MESSAGE_BYTES):
                    # Taken but not sent: first in the next message, then the rest.
                    outbox.items.appendleft(item)
                    outbox.ready[watch_id] = (subscription, omit)
                    outbox.ready.update(pending)
                    outbox.wake.set()
                    return b"".join(chunks)
                chunks.append(item)
                size += len(item)
        return b"".join(chunks)

    async def _read(
        self,
        requests: AsyncIterator[watch_pb2.WatchTasksRequest],
        watches: dict[int, asyncio.Task[None]],
        outbox: _Outbox,
        limit: int,
    ) -> None:
        """Starts and stops watches as the caller asks, until it closes its side."""
        with contextlib.suppress(asyncio.CancelledError):
            async for request in requests:
                watch_id = request.watch_id
                action = request.WhichOneof("action")
                if action == "stop":
                    watch = watches.pop(watch_id, None)
                    if watch is not None:
                        watch.cancel()
                elif action != "start":
                    error = InvalidArgument(f"request for watch {watch_id} starts or stops nothing")
                    await outbox.put(_end_item(watch_id, status_for(error)))
                elif watch_id in watches:
                    error = InvalidArgument(f"watch {watch_id} is already running")
                    await outbox.put(_end_item(watch_id, status_for(error)))
                else:
                    watches[watch_id] = asyncio.create_task(
                        self._run(watch_id, request, outbox, watches, limit)
                    )

    async def _run(
        self,
        watch_id: int,
        request: watch_pb2.WatchTasksRequest,
        outbox: _Outbox,
        watches: dict[int, asyncio.Task[None]],
        limit: int,
    ) -> None:
        try:
            # Each watch of the call is made in its own caller's namespace.
            with in_namespace(namespace_or_default(request.namespace)):
                listener = outbox.listener(watch_id, request.start.omit_payloads)
                async for task in self._service.updates(request.start, listener):
                    item = _task_item(watch_id, task.SerializeToString())
                    if len(item) > limit:
                        raise _too_big(task, len(item), limit)
                    await outbox.put(item)
            end = _end_item(watch_id)
        except ConveyorError as exc:
            end = _end_item(watch_id, status_for(exc))
        except asyncio.CancelledError:
            return  # stopped by the caller, or the call is over: nothing more to say
        except Exception as exc:
            end = _end_item(watch_id, status_for(internal_error("WatchTasks", exc)))
        finally:
            # Not its own any more: ended by the writer, which wrote its end.
            own = watches.get(watch_id) is asyncio.current_task()
            if own:
                del watches[watch_id]
        if own:
            await outbox.put(end)


def _too_big(task: tasks_pb2.Task, size: int, limit: int) -> ResourceExhausted:
    log.warning("watch of task %s ended: version %d is too big to send", task.id, task.version)
    return ResourceExhausted(
        f"task {task.id} version {task.version} is too big to watch: {size} bytes, over the "
        f"{limit} bytes of a message between store and gateway (CONVEYOR_MAX_MESSAGE_BYTES)"
    )


def _task_item(watch_id: int, task: bytes) -> bytes:
    """WatchUpdate{watch_id, task} as an entry of WatchTasksResponse.updates (field 1)."""
    update = b"\x08" + varint(watch_id) + length_delimited(2, task)  # field 1 is a varint
    return length_delimited(1, update)


def _end_item(watch_id: int, status: status_pb2.Status | None = None) -> bytes:
    end = _OK if status is None else status.SerializeToString()
    return length_delimited(
        1, watch_pb2.WatchUpdate(watch_id=watch_id, end=end).SerializeToString()
    )
