"""Applying the EVENTS stream to the database, in order, a batch per transaction."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from opentelemetry.trace import SpanKind

from conveyor import jetstream, subjects, tracing
from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.pull import PullError, next_subject, stream_sequence
from store import history
from store.pull import Puller
from store.repository import Fenced, TaskRepository
from store.screen import EventScreen
from store.watch import WatchHub

log = logging.getLogger(__name__)

FETCH_WAIT = 1.0
DECLARE_TIMEOUT = 5.0
"""How long checking the stream and declaring the consumer again may hold the applier
(NATS may be going away; a rebase reads the stream a few dozen times)."""
GAP_READ_WINDOW = 128
"""Direct reads in flight at once while filling a gap in the delivered events."""
COALESCE_BELOW = 100
"""A fetch of fewer events than this is followed by a pause before the next fetch..."""
COALESCE_WAIT = 0.004
"""...of this many seconds, so events gather into larger (cheaper per event) batches.

The first event after a quiet spell is applied at once; later ones wait at most this long
on top of the batch before them, which keeps event-to-watcher latency low."""


def _trace_applied(
    delivered: dict[int, Msg],
    batch: list[tuple[int, events_pb2.TaskEvent]],
    started_ns: int,
) -> None:
    """A span per applied event, in the trace of the task it belongs to, so one trace shows
    the task's whole life. Progress reports are left out: they are many and say little.

    A lone event's trace context is its message's headers; an event of a batch carries its
    own (``TaskEvent.traceparent``), the batch's message holding events of many traces.

    Nothing is made when no span processor would receive the spans (no exporter set up):
    these spans hold no logs, and making them cost a fifth of the applier's CPU."""
    if not tracing.spans_recorded():
        return
    for sequence, event in batch:
        kind = event.WhichOneof("kind")
        if kind in (None, "progressed"):
            continue
        if event.traceparent:
            carrier: Mapping[str, str] | None = {"traceparent": event.traceparent}
        else:
            msg = delivered.get(sequence)
            carrier = msg.headers if msg is not None else None
            if carrier and subjects.HEADER_EVENT_COUNT in carrier:
                continue  # an event of a batch whose trace was not sampled
        if not carrier or "traceparent" not in carrier:
            continue
        span = tracing.tracer.start_span(
            f"store apply {kind}",
            context=tracing.extract(carrier),
            kind=SpanKind.CONSUMER,
            start_time=started_ns,
            attributes={"conveyor.events_sequence": sequence},
        )
        span.end()


_Read = tuple[int, list[events_pb2.TaskEvent], int | None]
"""A message read from the stream: its sequence, admitted events and stream time (µs)."""


def _stream_time_us(msg: Msg) -> int:
    """The stream's time of the message in microseconds, from its reply subject's
    nanoseconds (nats-py's ``metadata`` goes through a float, which can round)."""
    tokens = (msg.reply or "").split(".")
    return int(tokens[7] if len(tokens) == 9 else tokens[Msg.Ack.Timestamp]) // 1000


def consumer_config(ack_wait: float = 30.0) -> ConsumerConfig:
    """The store's durable consumer: every event, in order, acked cumulatively."""
    return ConsumerConfig(
        durable_name=subjects.STORE_CONSUMER,
        description="The Conveyor store applying task events",
        filter_subject=f"{subjects.EVENTS_PREFIX}.>",
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.ALL,
        ack_wait=ack_wait,
        max_deliver=-1,
        max_ack_pending=50_000,
        max_waiting=16,
    )


class EventApplier:
    """Fetches events in batches and applies each batch in one transaction.

    The applied sequence is written in the same transaction as the state, and events at or
    below it are skipped, so a batch redelivered after a crash changes nothing.
    """

    def __init__(
        self,
        nc: NATS,
        js: JetStreamContext,
        repository: TaskRepository,
        hub: WatchHub,
        batch_size: int,
        screen: EventScreen | None = None,
    ) -> None:
        self._screen = screen or EventScreen()
        self._nc = nc
        self._js = js
        self._puller = Puller(nc, next_subject(subjects.STREAM_EVENTS, subjects.STORE_CONSUMER))
        self._repository = repository
        self._hub = hub
        self._batch_size = batch_size
        self.healthy = True
        # The highest sequence this applier knows to be applied: read at start, then
        # raised by every commit. The applier is the only writer, so in the usual case it
        # equals the stored value; when it does not (another replica applied more, the
        # cursor moved to a new history), the next batch does not follow it, and the gap
        # check reads the stored value instead of trusting it.
        self._applied = 0

    async def start(self) -> None:
        await self._follow_history()
        await self._js.add_consumer(subjects.STREAM_EVENTS, consumer_config())
        await self._puller.start()
        self._applied = await self._repository.applied_sequence()
        self._hub.applied_sequence = self._applied
        jetstream.after_reconnect(self._nc, self._reconnected)

    async def stop(self) -> None:
        """Ends the subscription its pull requests are answered on (a writer standing
        by); what it fetched and did not apply is redelivered to the next writer."""
        jetstream.forget_reconnect(self._nc, self._reconnected)
        sub = self._puller.sub
        if sub is not None and not self._nc.is_closed:
            try:
                await sub.unsubscribe()
            except Exception as exc:
                log.warning("ending the events inbox failed: %r", exc)

    async def _reconnected(self, _: JetStreamContext) -> None:
        self._puller.reconnected()

    async def _follow_history(self) -> bool:
        """Moves the cursor if the stream was made again or restored (store.history);
        whether it moved (here or by another replica)."""
        moved = await history.follow(self._js, self._repository)
        if moved is None:
            return False
        log.warning("%s", moved)
        self._applied = await self._repository.applied_sequence()  # it went back
        self._hub.applied_sequence = self._applied
        return True

    async def run(self) -> None:
        """Applies events until cancelled."""
        await self._catch_up_with_consumer()
        backoff = 0.1
        while True:
            try:
                messages = await self._puller.fetch(self._batch_size, FETCH_WAIT)
            except TimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("fetching events failed: %s", exc)
                await jetstream.backoff(self._nc, backoff)
                backoff = min(backoff * 2, 5.0)
                if isinstance(exc, PullError):
                    await self._declare_consumer()
                continue
            backoff = 0.1
            if not messages:
                continue
            await self._apply_messages(messages)
            if len(messages) < COALESCE_BELOW:
                await asyncio.sleep(COALESCE_WAIT)

    async def _declare_consumer(self) -> None:
        """Declares the consumer again after a pull request failed: one deleted (by an
        operator, or with the stream) is made anew. It delivers the stream from its start,
        and what was applied already is skipped by the applied sequence."""
        if not self._nc.is_connected:
            return  # NATS is away (its shutdown ended the request): not a lost consumer
        try:
            async with asyncio.timeout(DECLARE_TIMEOUT):
                await self._follow_history()
                await self._js.add_consumer(subjects.STREAM_EVENTS, consumer_config())
        except Exception as exc:  # NATS away, the stream gone: the next fetch fails too
            log.warning("declaring the store's consumer again failed: %r", exc)

    async def _apply_messages(self, messages: list[Msg]) -> None:
        fetched_ns = time.time_ns()
        batch: list[tuple[int, events_pb2.TaskEvent]] = []
        delivered: dict[int, Msg] = {}
        for msg in messages:
            sequence = stream_sequence(msg)
            if sequence in delivered:
                continue  # delivered twice in one fetch: its events are taken once
            delivered[sequence] = msg
            for event in self._screen.admit(sequence, msg.subject, msg.data, msg.headers):
                batch.append((sequence, event))
        sequences = list(delivered)
        last_sequence = max(sequences)
        if self._follows_applied(sequences):
            # The cursor's time is that of its event, the highest sequence (redelivered
            # events may come after later ones).
            last_time = _stream_time_us(delivered[last_sequence])
            changes = await self._apply_until_done(batch, last_time)
        else:
            times = {sequence: _stream_time_us(msg) for sequence, msg in delivered.items()}
            changes = await self._fill_gap_until_done(batch, times, last_sequence)
        # What the commit stored is at least this (more if another replica got further).
        self._applied = max(self._applied, last_sequence)
        await messages[-1].ack()  # AckPolicy.ALL: acknowledges the whole batch
        _trace_applied(delivered, batch, fetched_ns)
        await self._hub.publish(changes, last_sequence)

    def _follows_applied(self, delivered: list[int]) -> bool:
        """Whether the batch is exactly the events after the last one this applier
        committed, with none missing: then there is no gap to fill and no need to read
        the stored applied sequence. Anything else (a gap, a batch at or below it after a
        redelivery, events another replica applied) goes through :meth:`_fill_gap`."""
        expected = self._applied + 1
        for sequence in delivered:
            if sequence != expected:
                return False
            expected += 1
        return True

    async def _catch_up_with_consumer(self) -> None:
        """Applies, from the stream, the events the consumer has acknowledged but the
        database does not hold: a new, wiped or restored database behind a kept stream.
        The consumer would never deliver them again, and without this the store would
        stay without those tasks until the next event showed the gap."""
        try:
            info = await self._js.consumer_info(subjects.STREAM_EVENTS, subjects.STORE_CONSUMER)
        except Exception as exc:  # NATS away: the first batch then shows the gap
            log.warning("reading the store consumer's position failed: %r", exc)
            return
        acknowledged = info.ack_floor.stream_seq if info.ack_floor else 0
        if acknowledged <= self._applied:
            return
        log.warning(
            "the database holds events up to sequence %d of %s, but the store's consumer "
            "acknowledged up to %d (a new or restored database): applying the rest from "
            "the stream",
            self._applied,
            subjects.STREAM_EVENTS,
            acknowledged,
        )
        changes = await self._fill_gap_until_done([], {}, acknowledged)
        await self._hub.publish(changes, self._applied)

    async def _fill_gap_until_done(
        self,
        batch: list[tuple[int, events_pb2.TaskEvent]],
        delivered: dict[int, int],
        last: int,
    ) -> list[tasks_pb2.Task]:
        delay = 0.2
        while True:
            try:
                return await self._fill_gap(batch, delivered, last)
            except (asyncio.CancelledError, Fenced):
                raise
            except Exception as exc:
                log.warning("reading skipped events failed: %s; retrying in %.1fs", exc, delay)
                await jetstream.backoff(self._nc, delay)  # or sooner, once NATS is back
                delay = min(delay * 2, 10.0)

    async def _fill_gap(
        self,
        batch: list[tuple[int, events_pb2.TaskEvent]],
        delivered: dict[int, int],
        last: int,
    ) -> list[tasks_pb2.Task]:
        """Applies ``batch`` (the delivered events; ``delivered``: their sequences and
        stream times) together with the events up to sequence ``last`` and after the last
        one applied that were not delivered, read from the stream directly, in order;
        returns the changes of the last transaction, not yet published to watchers.

        A store that dies between fetching a batch and committing it leaves that batch
        pending on the consumer until its ack wait runs out, and the consumer meanwhile
        hands the next store later events. Acking those (AckPolicy.ALL) would acknowledge
        the earlier ones unapplied, and the applied sequence would pass them for good; so a
        gap is filled first and the events are applied in order, exactly once. A gap can
        be the whole stream (a new database), so it is never held whole: it is read and
        applied ``batch_size`` sequences per transaction, and the watchers get each
        transaction's changes as it commits.

        A batch at or below the applied sequence is checked against the stream's history
        first: it may be a new history's events (store.history).
        """
        applied = await self._repository.applied_sequence()
        if delivered and min(delivered) <= applied and await self._follow_history():
            # Events at or below the cursor: a redelivery, or a stream made again or
            # restored from an older backup with its consumer (store.history).
            applied = self._applied
        # The stored value is the truth: higher when another replica applied more, lower
        # after the cursor moved to a new history (or a database rolled back its last
        # commits).
        self._applied = applied
        start = applied + 1
        if not all(s in delivered for s in range(start, last + 1)):
            info = await self._js.stream_info(subjects.STREAM_EVENTS)
            start = max(start, info.state.first_seq)  # older ones aged out
            skipped = last + 1 - start - sum(1 for s in delivered if start <= s <= last)
            log.warning("reading %d events after %d the consumer skipped", skipped, applied)
        changes: list[tasks_pb2.Task] = []
        for window_start in range(start, last + 1, self._batch_size):
            if changes:
                await self._hub.publish(changes, self._applied)
            window_end = min(window_start + self._batch_size, last + 1)
            # The last window takes the rest of the batch (redelivered events below the
            # first window too: the repository skips what is applied already).
            final = window_end > last
            ready = list(batch) if final else [p for p in batch if p[0] < window_end]
            batch = [] if final else [p for p in batch if p[0] >= window_end]
            read_times: dict[int, int | None] = {}
            for sequence, events, stream_time in await self._read_all(
                [s for s in range(window_start, window_end) if s not in delivered]
            ):
                ready.extend((sequence, event) for event in events)
                read_times[sequence] = stream_time
            highest = max((sequence for sequence, _ in ready), default=None)
            if highest is None:
                changes = []
                continue
            time_us = delivered[highest] if highest in delivered else read_times[highest]
            changes = await self._apply_until_done(ready, time_us)
            self._applied = max(self._applied, highest)
        if batch:  # no window ran: all at or below the applied sequence (a redelivery)
            changes = await self._apply_until_done(batch, delivered.get(last))
        return changes

    async def _read_all(self, sequences: list[int]) -> list[_Read]:
        """The events at ``sequences`` that the stream holds, ``GAP_READ_WINDOW`` reads in
        flight at once: (sequence, its admitted events, stream time in µs)."""
        found: list[_Read] = []
        for start in range(0, len(sequences), GAP_READ_WINDOW):
            window = sequences[start : start + GAP_READ_WINDOW]
            for read in await asyncio.gather(*(self._read(s) for s in window)):
                if read is not None:
                    found.append(read)
        return found

    async def _read(self, sequence: int) -> _Read | None:
        try:
            raw = await self._js.get_msg(subjects.STREAM_EVENTS, sequence)
        except NotFoundError:
            return None  # deleted from the stream: there is nothing to apply
        events = self._screen.admit(sequence, raw.subject or "", raw.data or b"", raw.headers)
        if not events:
            return None
        return sequence, events, history.time_us(raw.time) if raw.time else None

    async def _apply_until_done(
        self, batch: list[tuple[int, events_pb2.TaskEvent]], last_time_us: int | None
    ) -> list[tasks_pb2.Task]:
        delay = 0.2
        while True:
            try:
                changes = await self._repository.apply(batch, last_time_us)
                self.healthy = True
                return changes
            except (asyncio.CancelledError, Fenced):
                raise  # fenced: a newer writer applies from here (store.roles)
            except Exception:
                # The database is away or failing: keep the batch and try again, in order.
                self.healthy = False
                log.exception("applying %d events failed; retrying in %.1fs", len(batch), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def catch_up(self, timeout: float) -> bool:
        """Waits until every event published so far is applied (read your writes)."""
        try:
            info = await self._js.stream_info(subjects.STREAM_EVENTS)
        except Exception as exc:
            log.warning("stream info failed: %s", exc)
            return False
        return await self._hub.wait_applied(info.state.last_seq, timeout)
