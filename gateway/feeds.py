"""WatchTasks on the gateway: each stream of a dashboard is one call to the store.

The store matches every change against the stream's filters in memory (store.watch), so
the gateway passes the store's messages on as bytes, as gateway.relay does. A stream
counts against CONVEYOR_MAX_WATCHES like a WatchTask. A slow reader is bounded end to end:
the gateway reads from the store only as fast as its client takes what it writes, gRPC's
flow control holds the store back, and the store's queue of the stream (256 changes) is
never grown: once full, the store ends the stream RESOURCE_EXHAUSTED, and the reader
lists and watches again.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import grpc

from gateway.relay import abort_like, store_metadata
from gateway.watch import StoreWatches

Context = Any  # grpc.aio.ServicerContext; grpc ships no type information
_WATCH_TASKS = "/conveyor.api.tasks.v1.TaskService/WatchTasks"


class TaskFeeds:
    """Serves WatchTasks over gRPC and gives the HTTP door its streams (gateway.sse)."""

    def __init__(self, channel: grpc.aio.Channel, watches: StoreWatches) -> None:
        self._method = channel.unary_stream(_WATCH_TASKS, _registered_method=True)
        self._watches = watches

    async def start(
        self, request: bytes, timeout: float | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The store's serialized WatchTasksResponses for ``request`` (in the caller's
        namespace), returned once the store is watching, so a list made after this
        misses nothing. Raises ResourceExhausted past the gateway's watch limit and
        grpc.aio.AioRpcError when the store refuses the request. ``timeout`` is the
        caller's deadline, passed on (none: the stream lasts as long as its reader)."""
        changes = self._changes(request, timeout)
        try:
            await anext(changes)
        except BaseException:
            await changes.aclose()
            raise
        return _rest(changes)

    async def _changes(
        self, request: bytes, timeout: float | None
    ) -> AsyncGenerator[bytes | None, None]:
        with self._watches.slot():
            call = self._method(request, timeout=timeout, metadata=store_metadata())
            try:
                await call.initial_metadata()
                if call.done():  # refused before it began: the loop raises its status
                    async for data in call:
                        yield data
                    return
                yield None  # watching
                async for data in call:
                    yield data
            finally:
                call.cancel()  # the reader went away: so does the store's side

    async def WatchTasks(self, request: bytes, context: Context) -> AsyncIterator[bytes]:
        """The gRPC handler (no serializers: the bytes are the store's)."""
        try:
            changes = await self.start(request, context.time_remaining())
        except grpc.aio.AioRpcError as err:
            await abort_like(context, err)
            return
        async with contextlib.aclosing(changes):
            # The client learns the watch is in place before the first change.
            await context.send_initial_metadata(())
            try:
                async for data in changes:
                    yield data
            except grpc.aio.AioRpcError as err:
                await abort_like(context, err)


async def _rest(changes: AsyncGenerator[bytes | None, None]) -> AsyncGenerator[bytes, None]:
    async with contextlib.aclosing(changes):
        async for data in changes:
            if data is not None:
                yield data
