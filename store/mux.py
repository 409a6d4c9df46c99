"""WatchMuxService: a gateway's WatchTask streams over one call (docs/architecture.md).

Each watch started on the call runs what WatchTask runs (``StoreService.updates``) in a
task of its own; their updates go into one bounded outbox, and the call writes whatever
the outbox holds as one message. A burst of changes to a thousand watched tasks is then a
handful of gRPC messages to the gateway instead of one per update, which is most of what
an update cost the store and the gateway. A watch that cannot put its update because the
outbox is full waits; meanwhile its hub subscription may overflow, and it then re-reads
what it missed from the history, as WatchTask does, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from google.rpc import status_pb2

from conveyor.api.store.v1 import watch_pb2, watch_pb2_grpc
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.errors import ConveyorError, InvalidArgument
from conveyor.server import internal_error, status_for
from store.service import StoreService

log = logging.getLogger(__name__)

Context = Any  # grpc.aio.ServicerContext; grpc ships no type information
OUTBOX_SIZE = 4096
"""Updates waiting to be written, of all the call's watches together."""
MESSAGE_BYTES = 1024 * 1024
"""A message is closed once it holds this much (one bigger update goes alone)."""
_OK = status_pb2.Status(code=0).SerializeToString()


class WatchMux(watch_pb2_grpc.WatchMuxServiceServicer):
    """Runs the watches the caller starts and stops, and batches their updates."""

    def __init__(self, service: StoreService) -> None:
        self._service = service

    async def WatchTasks(
        self, requests: AsyncIterator[watch_pb2.WatchTasksRequest], context: Context
    ) -> AsyncIterator[watch_pb2.WatchTasksResponse]:
        outbox: asyncio.Queue[watch_pb2.WatchUpdate] = asyncio.Queue(OUTBOX_SIZE)
        watches: dict[int, asyncio.Task[None]] = {}
        reader = asyncio.create_task(self._read(requests, watches, outbox))
        try:
            while True:
                updates = [await outbox.get()]
                size = updates[0].ByteSize()
                while size < MESSAGE_BYTES and not outbox.empty():
                    update = outbox.get_nowait()
                    updates.append(update)
                    size += update.ByteSize()
                yield watch_pb2.WatchTasksResponse(updates=updates)
        finally:
            for watch in [reader, *watches.values()]:
                watch.cancel()
            await asyncio.gather(reader, *watches.values(), return_exceptions=True)

    async def _read(
        self,
        requests: AsyncIterator[watch_pb2.WatchTasksRequest],
        watches: dict[int, asyncio.Task[None]],
        outbox: asyncio.Queue[watch_pb2.WatchUpdate],
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
                        self._run(watch_id, request.start, outbox, watches)
                    )

    async def _run(
        self,
        watch_id: int,
        request: tasks_pb2.WatchTaskRequest,
        outbox: asyncio.Queue[watch_pb2.WatchUpdate],
        watches: dict[int, asyncio.Task[None]],
    ) -> None:
        try:
            async for task in self._service.updates(request):
                await outbox.put(watch_pb2.WatchUpdate(watch_id=watch_id, task=task))
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


def _ended(watch_id: int, status: status_pb2.Status | None = None) -> watch_pb2.WatchUpdate:
    end = _OK if status is None else status.SerializeToString()
    return watch_pb2.WatchUpdate(watch_id=watch_id, end=end)
