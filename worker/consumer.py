"""Pulling tasks of one type from JetStream, by priority, and handing them to the runner.

Each priority of a type has its own durable consumer, shared by every worker serving the
type. A fetch round asks the priorities in an order drawn by weight: usually high, then
normal, then low, so a high task overtakes a backlog; but a share of rounds start with
normal or low, so those progress even under sustained high-priority load.

A round never waits on an empty priority: it asks each with a ``no_wait`` pull request
(answered at once, with what is there or "no messages"), for as many tasks as slots are
free, and moves on to the next priority for what is still missing. Only when every
priority is empty does it long-poll them (one task each, for ``IDLE_WAIT``). The next
round starts as soon as a slot is free, so slots are refilled as tasks finish, while
they run. Every slot a probe may fill is reserved when it is sent, and every message is
started the moment it arrives: the worker never holds a message it cannot start.

A round that found fewer tasks than it had slots for emptied the queue: the next one waits
``REFILL_PAUSE`` first. Tasks submitted one by one then come several to a request instead
of one pull request (and its answer) each, which cuts the worker's and nats-server's CPU
per task under a steady stream of single submits (docs/performance.md has the figures).
A task is fetched at most that much later; an idle worker's long-polls still deliver a
task the moment it arrives, and a worker with a backlog fills every slot without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from conveyor import jetstream, subjects
from conveyor.pull import PullError, PullInbox, next_subject
from worker.flow import Admission, Flow, Lease

log = logging.getLogger(__name__)

MAX_FETCH = 64
REFILL_PAUSE = 0.003
"""The wait before the round after one that emptied the queue (see above)."""
IDLE_WAIT = 0.25
"""Long-poll of an idle type; bounds how late a task of another priority is noticed when
the worker has fewer free slots than priorities."""
REQUEST_PATIENCE = 5.0
"""How long an unanswered pull request is waited for (beyond its own expiry) before it is
taken as lost (NATS away) and its slots freed."""
DECLARE_TIMEOUT = 2.0
"""How long declaring a consumer again may hold the fetch loop (NATS may be going away)."""
SKIP_AFTER_EMPTY = 8
"""After a priority was found empty, the next this-many tasks are fetched without probing
it again: a probe is a round trip, and a newly queued task of that priority still starts
within a few tasks."""
PRIORITIES = ("high", "normal", "low")
ROUND_WEIGHTS = {"high": 0.8, "normal": 0.15, "low": 0.05}
"""The chance that a fetch round starts with each priority."""


class Slots:
    """The worker's concurrency budget, shared by every type it serves: ``in_flight``
    counts running tasks and the slots reserved by pull requests still being answered;
    ``running`` holds the tasks, for a shutdown to wait for."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.running: set[asyncio.Task[None]] = set()
        self._freed = asyncio.Event()

    async def wait_free(self) -> int:
        """Waits until at least one slot is free; returns how many are."""
        while self.in_flight >= self.limit:
            self._freed.clear()
            await self._freed.wait()
        return self.limit - self.in_flight

    def take(self, count: int = 1) -> None:
        self.in_flight += count

    def give_back(self, count: int = 1) -> None:
        self.in_flight -= count
        self._freed.set()


def consumer_config(task_type: str, priority: str, ack_wait: float) -> ConsumerConfig:
    """The durable pull consumer of one type and priority that every worker shares."""
    return ConsumerConfig(
        durable_name=subjects.worker_consumer(task_type, priority),
        description=f"Conveyor workers serving {task_type}, {priority} priority",
        filter_subject=subjects.task_type_filter(task_type, priority),
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_deliver=-1,  # attempts are counted by the worker against each task's own limit
        max_ack_pending=20_000,
        max_waiting=512,
    )


def round_order(draw: float) -> list[str]:
    """The priorities in the order one fetch round asks them, for a draw in [0, 1)."""
    first = "high"
    threshold = 0.0
    for priority in ("low", "normal"):
        threshold += ROUND_WEIGHTS[priority]
        if draw < threshold:
            first = priority
            break
    return [first, *(p for p in PRIORITIES if p != first)]


class Pull(PullInbox):
    """One inbox of one priority's consumer: ``wanted`` messages still to come, each with a
    slot reserved (unless a long-poll's), each started by the consumer as it arrives."""

    __slots__ = ("admission", "consumer", "poll", "priority", "reserved")

    def __init__(self, consumer: TypeConsumer, priority: str, poll: bool) -> None:
        super().__init__(consumer.nc, consumer.next[priority], REQUEST_PATIENCE, priority)
        self.consumer = consumer
        self.priority = priority
        self.poll = poll
        self.admission: Admission | None = None
        self.reserved = True

    def delivered_one(self, msg: Msg, expected: bool) -> None:
        self.consumer.delivered(self, msg, expected)

    def ended(self, unfilled: int) -> None:
        """Frees the slots the request reserved and did not fill."""
        if unfilled and self.reserved:
            self.consumer.slots.give_back(unfilled)
        self.admission = None
        if self.poll:
            self.consumer.changed.set()


class TypeConsumer:
    """Fetches one type's tasks while slots are free and starts each as it arrives
    (``handle``, in a task of its own); a task's slot is given back when it ends."""

    def __init__(
        self,
        nc: NATS,
        js: JetStreamContext,
        task_type: str,
        ack_wait: float,
        slots: Slots,
        handle: Callable[[Msg], Awaitable[None]],
        flow: Flow,
    ) -> None:
        self.task_type = task_type
        self.nc = nc
        self._js = js
        self._ack_wait = ack_wait
        self.slots = slots
        self._handle = handle
        self._flow = flow
        self.next = {
            p: next_subject(subjects.STREAM_TASKS, subjects.worker_consumer(task_type, p))
            for p in PRIORITIES
        }
        self._probes = {p: Pull(self, p, poll=False) for p in PRIORITIES}
        self._polls = {p: Pull(self, p, poll=True) for p in PRIORITIES}
        self._skip = dict.fromkeys(PRIORITIES, 0)
        self._last_found = "normal"
        self.changed = asyncio.Event()
        """Set when a long-poll of this type delivers or ends."""
        self._stopping = asyncio.Event()
        self.last_poll = time.monotonic()
        self._delivered = 0
        """Tasks delivered to this consumer so far, by any of its requests."""

    async def declare(self) -> None:
        """Creates or updates the durable consumers (add_consumer applies a changed
        config; pull_subscribe would silently keep the old one), and the inboxes."""
        for priority in PRIORITIES:
            config = consumer_config(self.task_type, priority, self._ack_wait)
            await self._js.add_consumer(subjects.STREAM_TASKS, config)
            await self._probes[priority].subscribe()
            await self._polls[priority].subscribe()
        jetstream.after_reconnect(self.nc, self.reconnected)

    async def reconnected(self, _: JetStreamContext) -> None:
        """The connection came back: requests still open were sent to a server that may
        be gone, so they are taken as lost now rather than after their patience."""
        for pull in (*self._probes.values(), *self._polls.values()):
            if pull.wanted:
                await pull.lost()

    async def _declare_consumers(self) -> None:
        """Declares the consumers again after a pull request failed: one deleted (by an
        operator, or with the stream) is made anew, and its tasks are fetched again."""
        if not self.nc.is_connected:
            return  # NATS is away (its shutdown ended the requests): not a lost consumer
        for priority in PRIORITIES:
            config = consumer_config(self.task_type, priority, self._ack_wait)
            try:
                async with asyncio.timeout(DECLARE_TIMEOUT):
                    await self._js.add_consumer(subjects.STREAM_TASKS, config)
            except Exception as exc:  # NATS away, the stream gone: the next round fails too
                log.warning("declaring %s again failed: %r", config.durable_name, exc)

    async def run(self, stopping: asyncio.Event) -> None:
        """Fetches until ``stopping`` is set."""
        self._stopping = stopping
        flow = self._flow
        backoff = 0.1
        while not stopping.is_set():
            if flow.controls.paused(self.task_type):
                self.last_poll = time.monotonic()  # idle on purpose, not stuck
                await flow.controls.wait_resumed(self.task_type, stopping)
                continue
            free = await self.slots.wait_free()
            try:
                await self._expire_lost_polls()
                admission = await flow.admit(self.task_type, min(free, MAX_FETCH))
                if admission.batch == 0:
                    self.last_poll = time.monotonic()
                    continue
                try:
                    got = await self._round(admission)
                finally:
                    if admission.limited:
                        await asyncio.shield(flow.refund(self.task_type, admission))
                if 0 < got < admission.batch:
                    await asyncio.sleep(REFILL_PAUSE)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # During a leader election requests fail at once: back off, don't spin.
                log.warning("fetch of %s failed: %s", self.task_type, exc)
                await jetstream.backoff(self.nc, backoff)
                backoff = min(backoff * 2, 5.0)
                if isinstance(exc, PullError):
                    await self._declare_consumers()
                continue
            backoff = 0.1
            self.last_poll = time.monotonic()

    async def _round(self, admission: Admission) -> int:
        """Fetches up to ``admission.batch`` tasks: from the priorities in this round's
        order that have any, else by long-polling. Returns how many came in the round."""
        delivered = self._delivered
        if admission.limited and any(p.wanted for p in self._polls.values()):
            # Long-polls sent before the type was limited: let them end first.
            await self._wait_change(IDLE_WAIT + REQUEST_PATIENCE)
            return self._delivered - delivered
        order = [p for p in round_order(random.random()) if self._skip[p] <= 0]
        if not order:  # everything was empty a moment ago: look at all of them again
            order = round_order(random.random())
        got = 0
        for priority in order:
            # Other types' rounds take slots meanwhile: ask only for what is free now.
            want = min(admission.batch - got, self.slots.limit - self.slots.in_flight)
            if want <= 0:
                break
            pull = self._probes[priority]
            await self._request(pull, want, None, admission)
            try:
                async with asyncio.timeout(REQUEST_PATIENCE):
                    await pull.closed.wait()
            except TimeoutError:
                await pull.lost()
                raise
            pull.raise_failure()
            if pull.delivered:
                got += pull.delivered
                self._last_found = priority
                for other in PRIORITIES:
                    self._skip[other] -= pull.delivered
                self._skip[priority] = 0
            else:
                self._skip[priority] = SKIP_AFTER_EMPTY
        if got:
            return got
        self._skip = dict.fromkeys(PRIORITIES, 0)  # idle: probe everything next round
        await self._long_poll(admission)
        for poll in self._polls.values():
            poll.raise_failure()
        return self._delivered - delivered

    async def _long_poll(self, admission: Admission) -> None:
        """Every priority was empty: waits for a task of any, one each, the priority that
        had work last first, as many priorities as slots are free. A limited type polls
        that one alone, with its lease, and waits for the poll to end.

        A long-poll reserves no slot: an idle type must not keep the slots from the
        other types the worker serves. The task it brings takes a slot when it arrives
        and starts at once; on a worker serving several types that may briefly run a
        few more tasks than its concurrency, when idle types wake up together."""
        polls = [self._last_found, *(p for p in PRIORITIES if p != self._last_found)]
        if admission.limited:
            polls = polls[:1]
        free = max(1, min(admission.batch, self.slots.limit - self.slots.in_flight))
        idle = [p for p in polls if not self._polls[p].wanted][:free]
        for priority in idle:
            await self._request(self._polls[priority], 1, IDLE_WAIT, admission, reserve=False)
        if admission.limited and idle:
            pull = self._polls[idle[0]]
            while pull.wanted and time.monotonic() < pull.deadline:
                await self._wait_change(pull.deadline - time.monotonic())
            if pull.wanted:
                await pull.lost()
            return
        await self._wait_change(IDLE_WAIT + 0.05)

    async def _wait_change(self, timeout: float) -> None:
        """Waits until a long-poll of this type delivers or ends (or did since the last
        wait), or ``timeout`` passes."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.changed.wait()
        self.changed.clear()

    async def _request(
        self,
        pull: Pull,
        batch: int,
        expires: float | None,
        admission: Admission | None,
        reserve: bool = True,
    ) -> None:
        """Sends a pull request for ``batch`` messages, reserving a slot for each:
        answered at once when ``expires`` is None, else held by the server until then."""
        pull.admission = admission
        pull.reserved = reserve
        if reserve:
            self.slots.take(batch)
        await pull.request(batch, expires)

    def delivered(self, pull: Pull, msg: Msg, expected: bool) -> None:
        """A task arrived on one of the inboxes: starts it at once."""
        slots = self.slots
        if not expected or not pull.reserved:
            # A long-poll's task, or the late answer to a request taken as lost.
            slots.take()
        self._delivered += 1
        lease = None
        admission = pull.admission
        if admission is not None and not admission.used:
            admission.used = True  # the round's token and lease go with its first task
            lease = admission.lease
        if self._stopping.is_set():
            slots.give_back()
            if lease is not None:
                self._flow.release_later(lease)
            handing_back = asyncio.create_task(_hand_back(msg))
            slots.running.add(handing_back)  # a shutdown waits for it before closing NATS
            handing_back.add_done_callback(slots.running.discard)
            return
        running = asyncio.create_task(self._run(msg, lease))
        slots.running.add(running)
        running.add_done_callback(slots.running.discard)
        if pull.poll:
            self.changed.set()

    async def _run(self, msg: Msg, lease: Lease | None) -> None:
        """Handles one task in its reserved slot, and frees the slot (and lease) after."""
        try:
            await self._handle(msg)
        finally:
            self.slots.give_back()
            if lease is not None:
                self._flow.release_later(lease)

    async def _expire_lost_polls(self) -> None:
        now = time.monotonic()
        for pull in self._polls.values():
            if pull.wanted and now > pull.deadline:
                await pull.lost()


async def _hand_back(msg: Msg) -> None:
    """A task fetched while stopping goes straight back, for another worker."""
    with contextlib.suppress(Exception):
        await msg.nak()
