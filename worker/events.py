"""Publishing the worker's task events to the EVENTS stream: the events of many tasks in
one message (group commit).

``publish`` queues an event and returns once the message carrying it is acknowledged.
When no exchange is in flight the event goes at once, sent by the publish itself (a lone
task waits for nothing and costs no more than a plain publish); while one is, events
queue and go together in the next message when it returns. A busy worker so sends one
message, and reads one acknowledgement, per flush window instead of one per event; and
with one exchange at a time, each task's events stay in order.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from conveyor import messages, subjects
from conveyor.api.events.v1 import events_pb2

log = logging.getLogger(__name__)

RECORD_PATIENCE = 60.0
"""How long an event is retried while JetStream does not take it (a leader election, a
restart) before its publish raises and the task is left to its lease."""
RETRY_FIRST, RETRY_MOST = 0.1, 1.0
"""The first and longest pause, in seconds, before a failed exchange is sent again."""


@dataclass(slots=True)
class _Queued:
    """An event waiting for its message's acknowledgement."""

    event: events_pb2.TaskEvent
    done: asyncio.Future[None]
    give_up: float  # loop time past which a failed exchange fails this event's publish


@dataclass(slots=True)
class _Batch:
    """One message of events of one task type, fixed (and its id with it) before its first
    publish, so that a retry repeats it exactly and JetStream stores it once."""

    message: messages.Message
    queued: list[_Queued]

    def awaited(self) -> bool:
        return any(not q.done.done() for q in self.queued)


class EventPublisher:
    """Publishes a worker's TaskEvents, batched per flush window (see the module)."""

    def __init__(
        self,
        js: JetStreamContext,
        worker_id: str,
        nc: NATS | None = None,
        *,
        patience: float = RECORD_PATIENCE,
        max_events: int = messages.MAX_BATCH_EVENTS,
        max_bytes: int = messages.MAX_BATCH_BYTES,
    ) -> None:
        self.worker_id = worker_id
        # nats-py keeps a context's connection only as _nc (as messages.publisher does).
        self._nc = nc if nc is not None else js._nc
        self._acks = messages.publisher(js, nc)
        self._id = f"{worker_id}:{secrets.token_hex(8)}"
        self._sent = 0
        self._patience = patience
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._queue: list[_Queued] = []
        self._leading = False  # a publish is sending the exchange in flight itself
        self._flushing: asyncio.Task[None] | None = None  # or a task is

    async def publish(
        self,
        message: events_pb2.TaskMessage,
        attempt: int,
        *,
        time: Timestamp | None = None,
        start_time: Timestamp | None = None,
        **kind: Any,
    ) -> None:
        """Publishes one event of kind ``kind`` (e.g. ``started=Started()``) and waits for
        the stream's acknowledgement of the message carrying it; raises the last error if
        JetStream did not take it within the patience.

        ``time`` is when it happened (default: now); ``start_time``, on an outcome, is the
        start of an attempt whose ``started`` event was not published."""
        event = messages.worker_event(message, attempt, self.worker_id, time, start_time, **kind)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append(_Queued(event, done, loop.time() + self._patience))
        if self._leading or self._flushing is not None:
            await done  # an exchange is in flight: this event goes in the next one
            return
        # Idle: this call sends the events itself, without a task of its own, once the
        # tasks already runnable had their turn: tasks delivered together finish together,
        # and their events then share this message instead of waiting for the next one.
        self._leading = True
        try:
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:  # given up: its batch goes only if awaited
                done.cancel()
                raise
            await self._send(self._take())
        finally:
            self._leading = False
            if self._queue:  # queued behind this exchange: a task sends them
                self._flushing = loop.create_task(self._flush(), name="publish-events")
        await done

    async def close(self) -> None:
        """Waits for the events queued and in flight (but an exchange a publish sends
        itself, which its caller awaits): the tasks waiting on them are acked only once
        they are stored. Bounded: each event is given up after the patience, and a batch
        with no task waiting any more is dropped."""
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)

    async def _flush(self) -> None:
        """Sends the queue, one exchange at a time, until it is empty."""
        try:
            while self._queue:
                await self._send(self._take())
        finally:
            self._flushing = None

    def _take(self) -> list[_Queued]:
        queued, self._queue = self._queue, []
        return queued

    async def _send(self, queued: list[_Queued]) -> None:
        """Sends the events in one exchange, retried until each is stored or given up."""
        try:
            await self._commit(self._batches(queued))
        except Exception as exc:  # a bug here must not leave tasks waiting forever
            log.exception("publishing events failed")
            for q in queued:
                if not q.done.done():
                    q.done.set_exception(exc)

    def _batches(self, queued: list[_Queued]) -> list[_Batch]:
        """The queued events as messages: one per task type, split where a message would
        pass the count or byte bound (``messages.pack_events``). An event alone past the
        byte bound goes as a batch of one (the result check keeps every event under
        max_payload)."""
        limit = min(self._max_bytes, self._nc.max_payload // 2)
        groups = messages.pack_events([q.event for q in queued], limit, self._max_events)
        return [self._batch(queued[g[0]].event.type, [queued[i] for i in g]) for g in groups]

    def _batch(self, task_type: str, chunk: list[_Queued]) -> _Batch:
        self._sent += 1
        msg_id = messages.worker_batch_id(self._id, self._sent)
        events = [q.event for q in chunk]
        return _Batch(messages.event_batch(subjects.WORKER, task_type, msg_id, events), chunk)

    async def _commit(self, batches: list[_Batch]) -> None:
        """Publishes the batches (in one exchange) until JetStream acknowledges them, each
        time the same messages under the same ids, so one whose acknowledgement was lost
        is stored once; events queued meanwhile wait behind them, keeping their order.

        A batch every one of whose publishers has given up (past the patience, or
        cancelled: handed back on shutdown) is dropped: none of its tasks was acked, so
        each is redelivered when its lease ends, and whether an earlier try of the batch
        was stored or not, the task's history is still that of an attempt repeated."""
        loop = asyncio.get_running_loop()
        pause = RETRY_FIRST
        while batches := [b for b in batches if b.awaited()]:
            try:
                await self._acks.publish_all([b.message for b in batches])
            except Exception as exc:
                log.warning("publishing %d events failed (%s); trying again", _count(batches), exc)
                now = loop.time()
                for b in batches:
                    for q in b.queued:
                        if not q.done.done() and now + pause >= q.give_up:
                            q.done.set_exception(exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, RETRY_MOST)
                continue
            for b in batches:
                for q in b.queued:
                    if not q.done.done():
                        q.done.set_result(None)
            return


def _count(batches: list[_Batch]) -> int:
    return sum(len(b.queued) for b in batches)
