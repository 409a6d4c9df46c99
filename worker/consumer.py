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
per task by about 30 % under a steady stream of single submits (docs/performance.md).
A task is fetched at most that much later; an idle worker's long-polls still deliver a
task the moment it arrives, and a worker with a backlog fills every slot without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import DEFAULT_PREFIX, AckPolicy, ConsumerConfig, DeliverPolicy

from conveyor import jetstream, subjects
from worker.flow import Flow, Lease

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
    counts running tasks and the slots reserved by pull requests still being answered."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
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


@dataclass
class Admission:
    """What a round may fetch: ``batch`` tasks; for a limited type one, with the rate
    token and concurrency lease taken for it, refunded unless a task arrives (``used``)."""

    batch: int
    lease: Lease | None = None
    limited: bool = False
    used: bool = False


class Pull:
    """One inbox of one priority's consumer, with at most one pull request outstanding:
    ``wanted`` messages still to come (0: none outstanding), each with a reserved slot."""

    def __init__(self, priority: str, poll: bool) -> None:
        self.priority = priority
        self.poll = poll
        self.wanted = 0
        self.delivered = 0
        self.admission: Admission | None = None
        self.reserved = True
        self.deadline = 0.0
        self.closed = asyncio.Event()
        self.closed.set()
        self.inbox = ""
        self.sub: Subscription | None = None
        self.failure = ""
        """How the last request failed (an error status), "" while none did."""


class PullFailed(Exception):
    """JetStream ended a pull request with an error status: the consumer was deleted (409),
    no longer exists (503: nothing answers its subject), too many requests wait (409) ..."""


class TypeConsumer:
    """Fetches one type's tasks while slots are free and starts each as it arrives."""

    def __init__(
        self,
        nc: NATS,
        js: JetStreamContext,
        task_type: str,
        ack_wait: float,
        slots: Slots,
        dispatch: Callable[[Msg], asyncio.Task[None]],
        flow: Flow,
    ) -> None:
        self.task_type = task_type
        self._nc = nc
        self._js = js
        self._ack_wait = ack_wait
        self._slots = slots
        self._dispatch = dispatch
        self._flow = flow
        self._next = {
            p: f"{DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.{subjects.STREAM_TASKS}."
            f"{subjects.worker_consumer(task_type, p)}"
            for p in PRIORITIES
        }
        self._probes = {p: Pull(p, poll=False) for p in PRIORITIES}
        self._polls = {p: Pull(p, poll=True) for p in PRIORITIES}
        self._skip = dict.fromkeys(PRIORITIES, 0)
        self._last_found = "normal"
        self._changed = asyncio.Event()
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
            await self._open(self._probes[priority])
            await self._open(self._polls[priority])
        jetstream.after_reconnect(self._nc, self.reconnected)

    async def reconnected(self, _: JetStreamContext) -> None:
        """The connection came back: requests still open were sent to a server that may
        be gone, so they are taken as lost now rather than after their patience."""
        for pull in (*self._probes.values(), *self._polls.values()):
            if pull.wanted:
                await self._lost(pull)

    async def _declare_consumers(self) -> None:
        """Declares the consumers again after a pull request failed: one deleted (by an
        operator, or with the stream) is made anew, and its tasks are fetched again."""
        if not self._nc.is_connected:
            return  # NATS is away (its shutdown ended the requests): not a lost consumer
        for priority in PRIORITIES:
            config = consumer_config(self.task_type, priority, self._ack_wait)
            try:
                async with asyncio.timeout(DECLARE_TIMEOUT):
                    await self._js.add_consumer(subjects.STREAM_TASKS, config)
            except Exception as exc:  # NATS away, the stream gone: the next round fails too
                log.warning("declaring %s again failed: %r", config.durable_name, exc)

    async def _open(self, pull: Pull) -> None:
        async def on_message(msg: Msg) -> None:
            await self._on_message(pull, msg)

        pull.inbox = self._nc.new_inbox()
        pull.sub = await self._nc.subscribe(pull.inbox, cb=on_message)

    async def run(self, stopping: asyncio.Event) -> None:
        """Fetches until ``stopping`` is set."""
        self._stopping = stopping
        backoff = 0.1
        while not stopping.is_set():
            if self._flow.controls.paused(self.task_type):
                self.last_poll = time.monotonic()  # idle on purpose, not stuck
                await self._flow.controls.wait_resumed(self.task_type, stopping)
                continue
            free = await self._slots.wait_free()
            try:
                await self._expire_lost_polls()
                admission = await self._admit(min(free, MAX_FETCH))
                if admission.batch == 0:
                    self.last_poll = time.monotonic()
                    continue
                try:
                    got = await self._round(admission)
                finally:
                    if not admission.used and admission.limited:
                        await asyncio.shield(self._refund(admission.lease))
                if 0 < got < admission.batch:
                    await asyncio.sleep(REFILL_PAUSE)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # During a leader election requests fail at once: back off, don't spin.
                log.warning("fetch of %s failed: %s", self.task_type, exc)
                await jetstream.backoff(self._nc, backoff)
                backoff = min(backoff * 2, 5.0)
                if isinstance(exc, PullFailed):
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
            want = min(admission.batch - got, self._slots.limit - self._slots.in_flight)
            if want <= 0:
                break
            pull = self._probes[priority]
            await self._request(pull, want, None, admission)
            try:
                async with asyncio.timeout(REQUEST_PATIENCE):
                    await pull.closed.wait()
            except TimeoutError:
                await self._lost(pull)
                raise
            _raise_failure(pull)
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
            _raise_failure(poll)
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
        free = max(1, min(admission.batch, self._slots.limit - self._slots.in_flight))
        idle = [p for p in polls if not self._polls[p].wanted][:free]
        for priority in idle:
            await self._request(self._polls[priority], 1, IDLE_WAIT, admission, reserve=False)
        if admission.limited and idle:
            pull = self._polls[idle[0]]
            while pull.wanted and time.monotonic() < pull.deadline:
                await self._wait_change(pull.deadline - time.monotonic())
            if pull.wanted:
                await self._lost(pull)
            return
        await self._wait_change(IDLE_WAIT + 0.05)

    async def _wait_change(self, timeout: float) -> None:
        """Waits until a long-poll of this type delivers or ends (or did since the last
        wait), or ``timeout`` passes."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()
        self._changed.clear()

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
        body: dict[str, object] = {"batch": batch}
        if expires is None:
            body["no_wait"] = True
        else:
            body["expires"] = int(expires * 1e9)
        pull.wanted = batch
        pull.delivered = 0
        pull.failure = ""
        pull.admission = admission
        pull.deadline = time.monotonic() + (expires or 0.0) + REQUEST_PATIENCE
        pull.closed.clear()
        pull.reserved = reserve
        if reserve:
            self._slots.take(batch)
        try:
            await self._nc.publish(
                self._next[pull.priority], json.dumps(body).encode(), reply=pull.inbox
            )
        except BaseException:
            self._close(pull)
            raise

    async def _on_message(self, pull: Pull, msg: Msg) -> None:
        """A message or a status on one of the inboxes."""
        if not msg.reply:
            # A status ends the request: 404 no (more) messages, 408 expired, 409 ...
            status = msg.headers.get("Status") if msg.headers else None
            if status == "100":
                return  # a heartbeat
            if status not in ("404", "408"):
                description = msg.headers.get("Description", "") if msg.headers else ""
                description = description.split("\n", 1)[0].strip()  # a 503 has none
                pull.failure = f"{pull.priority} pull request ended: {status} {description}"
            self._close(pull)
            return
        if pull.wanted <= 0 or not pull.reserved:
            # A long-poll's task, or the late answer to a request taken as lost.
            self._slots.take()
        if pull.wanted > 0:
            pull.wanted -= 1
        pull.delivered += 1
        self._delivered += 1
        lease = None
        admission = pull.admission
        if admission is not None and not admission.used:
            admission.used = True  # the round's token and lease go with its first task
            lease = admission.lease
        await self._start(msg, lease)
        if pull.wanted == 0:
            self._close(pull)
        elif pull.poll:
            self._changed.set()

    def _close(self, pull: Pull) -> None:
        """The request is answered: frees the slots it reserved and did not fill."""
        if pull.wanted and pull.reserved:
            self._slots.give_back(pull.wanted)
        pull.wanted = 0
        pull.admission = None
        pull.closed.set()
        if pull.poll:
            self._changed.set()

    async def _start(self, msg: Msg, lease: Lease | None) -> None:
        """Starts a delivered task at once (its slot is reserved)."""
        if self._stopping.is_set():
            self._slots.give_back()
            if lease is not None:
                self._release(lease)
            with contextlib.suppress(Exception):
                await msg.nak()  # fetched while stopping: hand it straight back
            return
        running = self._dispatch(msg)
        if lease is not None:
            running.add_done_callback(lambda _: self._release(lease))

    async def _lost(self, pull: Pull) -> None:
        """No answer came (NATS away): frees the request's slots and moves to a new inbox,
        so a late answer cannot be taken for the answer to a later request."""
        old = pull.sub
        await self._open(pull)  # first: a round woken by the close asks on the new inbox
        self._close(pull)
        if old is not None:
            with contextlib.suppress(Exception):
                await old.unsubscribe()

    async def _expire_lost_polls(self) -> None:
        now = time.monotonic()
        for pull in self._polls.values():
            if pull.wanted and now > pull.deadline:
                await self._lost(pull)

    async def _admit(self, batch: int) -> Admission:
        """How many tasks this round may fetch under the type's cluster-wide limits, and
        the concurrency lease that goes with it (limited types fetch one at a time)."""
        limits = self._flow.controls.limits(self.task_type)
        if limits.max_per_second > 0:
            wait = await self._flow.rate.take(self.task_type, limits.max_per_second)
            if wait > 0:
                await asyncio.sleep(min(wait, 1.0))
                return Admission(0)
            batch = 1
        if limits.max_concurrency > 0:
            lease = await self._flow.semaphore.acquire(self.task_type, limits.max_concurrency)
            if lease is None:
                if limits.max_per_second > 0:
                    await self._flow.rate.give_back(self.task_type, limits.max_per_second)
                await asyncio.sleep(0.1)
                return Admission(0)
            return Admission(1, lease, limited=True)
        return Admission(batch, limited=limits.max_per_second > 0)

    async def _refund(self, lease: Lease | None) -> None:
        """Gives back what a limited round that found nothing took."""
        limits = self._flow.controls.limits(self.task_type)
        if limits.max_per_second > 0:
            await self._flow.rate.give_back(self.task_type, limits.max_per_second)
        if lease is not None:
            await self._flow.semaphore.release(lease)

    def _release(self, lease: Lease) -> None:
        asyncio.create_task(self._flow.semaphore.release(lease))  # noqa: RUF006


def _raise_failure(pull: Pull) -> None:
    """Raises PullFailed (once) if the pull's last request ended with an error status."""
    if pull.failure:
        failure, pull.failure = pull.failure, ""
        raise PullFailed(failure)
