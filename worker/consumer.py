"""Pulling tasks of one type from JetStream, by priority, and handing them to the runner.

Each priority of a type has its own durable consumer, shared by every worker serving the
type. A fetch round asks the priorities in an order drawn by weight: usually high, then
normal, then low, so a high task overtakes a backlog; but a share of rounds start with
normal or low, so those progress even under sustained high-priority load.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from conveyor import subjects
from worker.flow import Flow, Lease

log = logging.getLogger(__name__)

MAX_FETCH = 64
IDLE_WAIT = 0.25
"""Long-poll of an idle type; bounds how late a task of another priority is noticed."""
BUSY_WAIT = 0.01
"""A probe of a priority that may be empty: an empty queue costs this long."""
SKIP_AFTER_EMPTY = 8
"""After a priority was found empty, the next this-many tasks are fetched without probing
it again: probes stay cheap, and a newly queued task of that priority still starts within
a few tasks."""
PRIORITIES = ("high", "normal", "low")
ROUND_WEIGHTS = {"high": 0.8, "normal": 0.15, "low": 0.05}
"""The chance that a fetch round starts with each priority."""


class Slots:
    """The worker's concurrency budget, shared by every type it serves."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self._changed = asyncio.Condition()

    async def wait_free(self) -> int:
        """Waits until at least one slot is free; returns how many are."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.limit)
            return self.limit - self.in_flight

    def take(self) -> None:
        self.in_flight += 1

    async def give_back(self) -> None:
        async with self._changed:
            self.in_flight -= 1
            self._changed.notify_all()


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


class TypeConsumer:
    """Fetches one type's tasks in small batches while slots are free."""

    def __init__(
        self,
        js: JetStreamContext,
        task_type: str,
        ack_wait: float,
        slots: Slots,
        dispatch: Callable[[Msg], Awaitable[asyncio.Task[None]]],
        flow: Flow,
    ) -> None:
        self.task_type = task_type
        self._js = js
        self._ack_wait = ack_wait
        self._slots = slots
        self._dispatch = dispatch
        self._flow = flow
        self._subs: dict[str, JetStreamContext.PullSubscription] = {}
        self._skip = dict.fromkeys(PRIORITIES, 0)
        self.last_poll = time.monotonic()

    async def declare(self) -> None:
        """Creates or updates the durable consumers (add_consumer applies a changed
        config; pull_subscribe would silently keep the old one)."""
        for priority in PRIORITIES:
            config = consumer_config(self.task_type, priority, self._ack_wait)
            await self._js.add_consumer(subjects.STREAM_TASKS, config)
            self._subs[priority] = await self._js.pull_subscribe_bind(
                subjects.worker_consumer(self.task_type, priority), subjects.STREAM_TASKS
            )

    async def run(self, stopping: asyncio.Event) -> None:
        """Fetches until ``stopping`` is set."""
        backoff = 0.1
        while not stopping.is_set():
            if self._flow.controls.paused(self.task_type):
                self.last_poll = time.monotonic()  # idle on purpose, not stuck
                await self._flow.controls.wait_resumed(self.task_type, stopping)
                continue
            free = await self._slots.wait_free()
            try:
                lease, batch = await self._admit(min(free, MAX_FETCH))
                if batch == 0:
                    self.last_poll = time.monotonic()
                    continue
                messages = await self._fetch_round(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # During a leader election fetch fails at once: back off instead of spinning.
                log.warning("fetch of %s failed: %s", self.task_type, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            self.last_poll = time.monotonic()
            if not messages:
                await self._refund(lease)
            for msg in messages:
                if stopping.is_set():
                    await msg.nak()  # fetched while stopping: hand it straight back
                    continue
                self._slots.take()
                running = await self._dispatch(msg)
                if lease is not None:
                    running.add_done_callback(self._releaser(lease))

    async def _admit(self, batch: int) -> tuple[Lease | None, int]:
        """How many tasks this round may fetch under the type's cluster-wide limits, and
        the concurrency lease that goes with it (limited types fetch one at a time)."""
        limits = self._flow.controls.limits(self.task_type)
        if limits.max_per_second > 0:
            wait = await self._flow.rate.take(self.task_type, limits.max_per_second)
            if wait > 0:
                await asyncio.sleep(min(wait, 1.0))
                return None, 0
            batch = 1
        if limits.max_concurrency > 0:
            lease = await self._flow.semaphore.acquire(self.task_type, limits.max_concurrency)
            if lease is None:
                if limits.max_per_second > 0:
                    await self._flow.rate.give_back(self.task_type, limits.max_per_second)
                await asyncio.sleep(0.1)
                return None, 0
            return lease, 1
        return None, batch

    async def _refund(self, lease: Lease | None) -> None:
        """Gives back what an empty fetch round took."""
        limits = self._flow.controls.limits(self.task_type)
        if limits.max_per_second > 0:
            await self._flow.rate.give_back(self.task_type, limits.max_per_second)
        if lease is not None:
            await self._flow.semaphore.release(lease)

    def _releaser(self, lease: Lease) -> Callable[[asyncio.Task[None]], None]:
        def release(_: asyncio.Task[None]) -> None:
            asyncio.create_task(self._flow.semaphore.release(lease))  # noqa: RUF006

        return release

    async def _fetch_round(self, batch: int) -> list[Msg]:
        """Messages from the first priority in this round's order that has any."""
        order = [p for p in round_order(random.random()) if self._skip[p] <= 0]
        if not order:  # everything was empty a moment ago: look at all of them again
            order = round_order(random.random())
        # Messages that arrived after a short fetch timed out wait in the subscription;
        # take them first, before their lease runs out.
        stranded = [p for p in PRIORITIES if self._subs[p].pending_msgs]
        if stranded:
            order = [*stranded, *(p for p in order if p not in stranded)]
        for index, priority in enumerate(order):
            last = index == len(order) - 1
            try:
                messages = await self._subs[priority].fetch(
                    batch, timeout=IDLE_WAIT if last else BUSY_WAIT
                )
            except TimeoutError:
                self._skip[priority] = SKIP_AFTER_EMPTY
                continue
            for other in PRIORITIES:
                self._skip[other] -= len(messages)
            self._skip[priority] = 0
            return messages
        self._skip = dict.fromkeys(PRIORITIES, 0)  # idle: probe everything next round
        return []
