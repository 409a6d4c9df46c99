"""WatchTask on the gateway: all of its clients' watches over one call to the store.

The store's WatchMuxService (store/mux.py) runs each watch exactly as WatchTask would and
batches the updates of all of them into few messages; here they are sorted out to the
client streams. A client that reads slower than its task changes has its updates held up
to ``WATCH_QUEUE_SIZE``; past that, its watch is stopped at the store and, once the client
has taken what was held, started again after the last version it got (the store fills the
rest from the history), so a slow client costs memory for a bounded number of updates
and loses none. When the call to the store breaks, every watch on it ends UNAVAILABLE, as
a relayed WatchTask did: clients resume after the last version they saw (the SDK does so
itself), on a new call. A call broken because its channel was replaced by one with a
renewed certificate (conveyor.renewing) is no such failure: its watches go on, on a call
of the new channel, from the last version each sent, and their clients notice nothing.

What goes wrong with one watch ends that watch only. The store is told the largest message
this gateway takes (call metadata), so it never sends one that would end the call, and it
ends a watch whose update is too big by itself. A message whose task is nested too deep to
parse inside the call's envelope (one level deeper than a client's own) is taken apart
update by update, each task parsed on its own.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, status_pb2
from grpc_status import rpc_status

from conveyor import subjects
from conveyor.api.store.v1 import watch_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.auth.principal import current_namespace
from conveyor.config import Limits
from conveyor.errors import ResourceExhausted
from conveyor.renewing import generation
from conveyor.tasks import is_terminal
from conveyor.wire import length_delimited
from gateway.relay import abort_like

log = logging.getLogger(__name__)

Context = Any  # grpc.aio.ServicerContext; grpc ships no type information
WATCH_QUEUE_SIZE = 256
"""Updates held for one client before its watch is restarted behind it."""
_WATCH_TASKS = "/conveyor.api.store.v1.WatchMuxService/WatchTasks"


class _Watch:
    """One client's watch on a call: the updates for it not yet sent to the client."""

    def __init__(self, watch_id: int) -> None:
        self.watch_id = watch_id
        self.held: collections.deque[watch_pb2.WatchUpdate] = collections.deque()
        self.ready = asyncio.Event()
        self.overflowed = False
        self.broken: BaseException | None = None

    def offer(self, update: watch_pb2.WatchUpdate) -> bool:
        """Holds the update; False (and nothing held) once the client is too far behind."""
        if len(self.held) >= WATCH_QUEUE_SIZE:
            self.overflowed = True
            self.ready.set()
            return False
        self.held.append(update)
        self.ready.set()
        return True

    def break_off(self, error: BaseException) -> None:
        self.broken = error
        self.ready.set()

    async def next(self) -> watch_pb2.WatchUpdate | None:
        """The next update; None once it overflowed and all it held is taken; raises what
        broke the call once all it held is taken."""
        while not self.held:
            if self.overflowed:
                return None
            if self.broken is not None:
                raise self.broken
            self.ready.clear()
            await self.ready.wait()
        return self.held.popleft()


class _Call:
    """One WatchTasks call to the store and the watches running on it."""

    def __init__(self, method: Any, max_message_bytes: int, generation: int) -> None:
        self.generation = generation
        """The channel's generation the call runs on (conveyor.renewing)."""
        self._requests: asyncio.Queue[watch_pb2.WatchTasksRequest] = asyncio.Queue()
        self._watches: dict[int, _Watch] = {}
        self._next_id = 0
        self.closed = False
        metadata = ((subjects.MAX_MESSAGE_METADATA, str(max_message_bytes)),)
        self._call = method(self._request_stream(), metadata=metadata)
        self._reader = asyncio.create_task(self._read(), name="store-watches")

    async def _request_stream(self) -> AsyncIterator[watch_pb2.WatchTasksRequest]:
        while True:
            yield await self._requests.get()

    def start(self, request: tasks_pb2.WatchTaskRequest) -> _Watch:
        """Starts a watch in the caller's namespace: the store limits it to that."""
        self._next_id += 1
        watch = self._watches[self._next_id] = _Watch(self._next_id)
        self._requests.put_nowait(
            watch_pb2.WatchTasksRequest(
                watch_id=watch.watch_id, start=request, namespace=current_namespace()
            )
        )
        return watch

    def stop(self, watch: _Watch) -> None:
        if self._watches.pop(watch.watch_id, None) is not None and not self.closed:
            self._requests.put_nowait(
                watch_pb2.WatchTasksRequest(watch_id=watch.watch_id, stop=True)
            )

    async def _read(self) -> None:
        error: BaseException = grpc.aio.AioRpcError(
            grpc.StatusCode.UNAVAILABLE,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(),
            details="the store ended the watch stream",
        )
        try:
            async for updates in self._call:
                for update in updates:
                    watch = self._watches.get(update.watch_id)
                    if watch is None:
                        continue  # stopped: what was on its way is dropped
                    if update.WhichOneof("item") == "end":
                        del self._watches[update.watch_id]  # over at the store: no stop
                        watch.held.append(update)  # always held: it is the last
                        watch.ready.set()
                    elif not watch.offer(update):
                        self.stop(watch)  # restarted behind once its client catches up
        except grpc.aio.AioRpcError as exc:
            error = exc
        except Exception:  # a message that does not parse, say: the call is of no more use
            log.exception("reading the store's watch stream failed")
            self._call.cancel()
        finally:
            self.closed = True
            for watch in self._watches.values():
                watch.break_off(error)
            self._watches.clear()


class StoreWatches:
    """Serves WatchTask: each client's watch runs on the gateway's one call to the store
    (opened on the first watch, opened again after it breaks); past ``max_watches`` at
    once, a new watch is refused with RESOURCE_EXHAUSTED."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        max_message_bytes: int,
        max_watches: int = Limits.max_watches,
    ) -> None:
        self.max_watches = max_watches
        self.open = 0
        self._channel = channel
        self._method = channel.stream_stream(
            _WATCH_TASKS,
            request_serializer=watch_pb2.WatchTasksRequest.SerializeToString,
            response_deserializer=parse_updates,
            _registered_method=True,
        )
        self._max_message_bytes = max_message_bytes
        self._call: _Call | None = None

    def _current(self) -> _Call:
        now = generation(self._channel)
        if self._call is None or self._call.closed or self._call.generation != now:
            self._call = _Call(self._method, self._max_message_bytes, now)
        return self._call

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Counts a stream (WatchTask or WatchTasks, gRPC or SSE) while it is open; raises
        ResourceExhausted past ``max_watches``."""
        if self.open >= self.max_watches:
            raise ResourceExhausted(
                f"this gateway has {self.max_watches} watches open, its limit "
                "(CONVEYOR_MAX_WATCHES): retry later, or through another gateway"
            )
        self.open += 1
        try:
            yield
        finally:
            self.open -= 1

    async def WatchTask(
        self, request: tasks_pb2.WatchTaskRequest, context: Context
    ) -> AsyncGenerator[bytes, None]:
        """The updates WatchTask streams, serialized (the handler has no serializer): each
        a WatchTaskResponse, whose one field is the task, framed by hand without copying
        the task into a message of its own."""
        with self.slot():
            # Closed here, not when collected: its end stops the watch at the store.
            async with contextlib.aclosing(self._updates(request, context)) as updates:
                async for task in updates:
                    yield length_delimited(1, task.SerializeToString())

    async def tasks(
        self, request: tasks_pb2.WatchTaskRequest, context: Context
    ) -> AsyncGenerator[tasks_pb2.Task, None]:
        """The tasks of WatchTask's updates, unserialized, for the HTTP door to render."""
        with self.slot():
            async with contextlib.aclosing(self._updates(request, context)) as updates:
                async for task in updates:
                    yield task

    async def _updates(
        self, request: tasks_pb2.WatchTaskRequest, context: Context
    ) -> AsyncGenerator[tasks_pb2.Task, None]:
        after = request.after_version
        while True:
            call = self._current()
            watch = call.start(
                tasks_pb2.WatchTaskRequest(
                    task_id=request.task_id,
                    after_version=after,
                    omit_payloads=request.omit_payloads,
                )
            )
            try:
                while (update := await watch.next()) is not None:
                    if update.WhichOneof("item") == "end":
                        status = status_pb2.Status.FromString(update.end)
                        if status.code != 0:
                            await context.abort_with_status(rpc_status.to_status(status))
                        return
                    yield update.task
                    after = update.task.version
                    if is_terminal(update.task.state):
                        return
            except grpc.aio.AioRpcError as err:
                if call.generation == generation(self._channel):
                    await abort_like(context, err)
                # Else its channel was replaced: resumed on the new one.
            finally:
                call.stop(watch)


def parse_updates(data: bytes) -> Sequence[watch_pb2.WatchUpdate]:
    """The updates of one of the store's messages. One that does not parse as a whole is
    parsed update by update: a task nested close to the parser's depth limit fails only
    inside the envelope, and must not cost the other watches their call."""
    try:
        return watch_pb2.WatchTasksResponse.FromString(data).updates
    except DecodeError:
        pass
    try:
        return [
            _parse_update(chunk)
            for number, chunk in _fields(data)
            if number == 1 and isinstance(chunk, bytes)
        ]
    except (IndexError, TypeError) as exc:
        raise DecodeError(f"the store's message is malformed: {exc}") from exc


def _parse_update(data: bytes) -> watch_pb2.WatchUpdate:
    """One update; its task parsed on its own (two levels less deep), else its watch ended
    INTERNAL."""
    try:
        return watch_pb2.WatchUpdate.FromString(data)
    except DecodeError:
        pass
    update = watch_pb2.WatchUpdate()
    for number, value in _fields(data):
        if number == 1 and isinstance(value, int):
            update.watch_id = value
        elif number == 2 and isinstance(value, bytes):
            try:
                update.task.MergeFrom(tasks_pb2.Task.FromString(value))
            except DecodeError:
                log.warning("a task of watch %d cannot be parsed; ending it", update.watch_id)
                end = status_pb2.Status(
                    code=code_pb2.INTERNAL, message="the task cannot be parsed (nested too deep)"
                )
                update.end = end.SerializeToString()
        elif number == 3 and isinstance(value, bytes):
            update.end = value
    return update


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of each field of a serialized message: varints as int,
    length-delimited fields as bytes. Other wire types are not used by the messages read."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _varint(data, pos)
            yield number, value
        elif wire_type == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise IndexError("a field runs past the end")
            yield number, data[pos : pos + size]
            pos += size
        else:
            raise TypeError(f"unexpected wire type {wire_type}")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise TypeError("a varint is too long")
