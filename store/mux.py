"""WatchMuxService: a gateway's WatchTask streams over one call (docs/architecture.md).

Each watch started on the call runs what WatchTask runs (``StoreService.updates``) in a
task of its own; their updates go into one bounded outbox, and the call writes whatever
the outbox holds as one message. A burst of changes to a thousand watched tasks is then a
handful of gRPC messages to the gateway instead of one per update, which is most of what
an update cost the store and the gateway. A watch that cannot put its update because the
outbox is full waits; meanwhile its hub subscription may overflow, and it then re-reads
what it missed from the history, as WatchTask does, so nothing is lost.

No message may exceed what both ends accept (the store's own limit, or the smaller one the
gateway sends in the call's metadata): a message too big for gRPC would end the call,
and with it every watch on it. So updates are packed up to that size, and a single update
too big to send ends its own watch RESOURCE_EXHAUSTED while the others go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from google.rpc import status_pb2

from conveyor import subjects
from conveyor.api.store.v1 import watch_pb2, watch_pb2_grpc
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.auth.namespaces import in_namespace, namespace_or_default
from conveyor.errors import ConveyorError, InvalidArgument, ResourceExhausted
from conveyor.server import internal_error, status_for
from store.service import StoreService

log = logging.getLogger(__name__)

Context = Any  # grpc.aio.ServicerContext; grpc ships no type information
OUTBOX_SIZE = 4096
"""Updates waiting to be written, of all the call's watches together."""
MESSAGE_BYTES = 1024 * 1024
"""A message is closed once it holds this much (one bigger update goes alone)."""
FRAME_BYTES = 16
"""A bound on what an update adds to a message besides itself (field tag and length)."""
_OK = status_pb2.Status(code=0).SerializeToString()


class WatchMux(watch_pb2_grpc.WatchMuxServiceServicer):
    """Runs the watches the caller starts and stops, and batches their updates."""

    def __init__(self, service: StoreService, max_message_bytes: int) -> None:
        self._service = service
        self._max_message_bytes = max_message_bytes

    def _message_limit(self, context: Context) -> int:
        """The largest message both sides of the call accept."""
        limit = self._max_message_bytes
        for key, value in context.invocation_metadata() or ():
            if key == subjects.MAX_MESSAGE_METADATA and value.isdigit():
                limit = min(limit, int(value))
        return limit

    async def WatchTasks(
        self, requests: AsyncIterator[watch_pb2.WatchTasksRequest], context: Context
    ) -> AsyncIterator[watch_pb2.WatchTasksResponse]:
        outbox: asyncio.Queue[tuple[watch_pb2.WatchUpdate, int]] = asyncio.Queue(OUTBOX_SIZE)
        watches: dict[int, asyncio.Task[None]] = {}
        limit = self._message_limit(context)
        reader = asyncio.create_task(self._read(requests, watches, outbox, limit))
        try:
            carried: tuple[watch_pb2.WatchUpdate, int] | None = None
            while True:
                update, size = carried or await outbox.get()
                updates, carried = [update], None
                while size < MESSAGE_BYTES and not outbox.empty():
                    update, framed = outbox.get_nowait()
                    if size + framed > limit:
                        carried = (update, framed)  # the first of the next message
                        break
                    updates.append(update)
                    size += framed
                yield watch_pb2.WatchTasksResponse(updates=updates)
        finally:
            for watch in [reader, *watches.values()]:
                watch.cancel()
            await asyncio.gather(reader, *watches.values(), return_exceptions=True)

    async def _read(
        self,
        requests: AsyncIterator[watch_pb2.WatchTasksRequest],
        watches: dict[int, asyncio.Task[None]],
        outbox: asyncio.Queue[tuple[watch_pb2.WatchUpdate, int]],
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
                    await outbox.put(_ended(watch_id, status_for(error)))
                elif watch_id in watches:
                    error = InvalidArgument(f"watch {watch_id} is already running")
                    await outbox.put(_ended(watch_id, status_for(error)))
                else:
                    watches[watch_id] = asyncio.create_task(
                        self._run(watch_id, request, outbox, watches, limit)
                    )

    async def _run(
        self,
        watch_id: int,
        request: watch_pb2.WatchTasksRequest,
        outbox: asyncio.Queue[tuple[watch_pb2.WatchUpdate, int]],
        watches: dict[int, asyncio.Task[None]],
        limit: int,
    ) -> None:
        try:
            # Each watch of the call is made in its own caller's namespace.
            with in_namespace(namespace_or_default(request.namespace)):
                async for task in self._service.updates(request.start):
                    update = watch_pb2.WatchUpdate(watch_id=watch_id, task=task)
                    framed = update.ByteSize() + FRAME_BYTES
                    if framed > limit:
                        raise _too_big(task, framed, limit)
                    await outbox.put((update, framed))
            end = _ended(watch_id)
        except ConveyorError as exc:
            end = _ended(watch_id, status_for(exc))
        except asyncio.CancelledError:
            return  # stopped by the caller, or the call is over: nothing more to say
        except Exception as exc:
            end = _ended(watch_id, status_for(internal_error("WatchTasks", exc)))
        finally:
            if watches.get(watch_id) is asyncio.current_task():
                del watches[watch_id]
        await outbox.put(end)


def _too_big(task: tasks_pb2.Task, size: int, limit: int) -> ResourceExhausted:
    log.warning("watch of task %s ended: version %d is too big to send", task.id, task.version)
    return ResourceExhausted(
        f"task {task.id} version {task.version} is too big to watch: {size} bytes, over the "
        f"{limit} bytes of a message between store and gateway (CONVEYOR_MAX_MESSAGE_BYTES)"
    )


def _ended(
    watch_id: int, status: status_pb2.Status | None = None
) -> tuple[watch_pb2.WatchUpdate, int]:
    end = _OK if status is None else status.SerializeToString()
    update = watch_pb2.WatchUpdate(watch_id=watch_id, end=end)
    return update, update.ByteSize() + FRAME_BYTES
