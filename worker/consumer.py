"""Pulling tasks of one type from JetStream and handing them to the runner."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from conveyor import subjects

log = logging.getLogger(__name__)

MAX_FETCH = 64
FETCH_WAIT = 1.0


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


def consumer_config(task_type: str, ack_wait: float) -> ConsumerConfig:
    """The durable pull consumer every worker serving ``task_type`` shares."""
    return ConsumerConfig(
        durable_name=subjects.worker_consumer(task_type),
        description=f"Conveyor workers serving {task_type}",
        filter_subject=subjects.task_type_filter(task_type),
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_deliver=-1,  # attempts are counted by the worker against each task's own limit
        max_ack_pending=20_000,
        max_waiting=512,
    )


class TypeConsumer:
    """Fetches one type's tasks in small batches while slots are free."""

    def __init__(
        self,
        js: JetStreamContext,
        task_type: str,
        ack_wait: float,
        slots: Slots,
        dispatch: Callable[[Msg], Awaitable[None]],
    ) -> None:
        self.task_type = task_type
        self._js = js
        self._ack_wait = ack_wait
        self._slots = slots
        self._dispatch = dispatch
        self.last_poll = time.monotonic()

    async def declare(self) -> None:
        """Creates or updates the durable consumer (add_consumer applies a changed config;
        pull_subscribe would silently keep the old one)."""
        await self._js.add_consumer(
            subjects.STREAM_TASKS, consumer_config(self.task_type, self._ack_wait)
        )
        self._sub = await self._js.pull_subscribe_bind(
            subjects.worker_consumer(self.task_type), subjects.STREAM_TASKS
        )

    async def run(self, stopping: asyncio.Event) -> None:
        """Fetches until ``stopping`` is set."""
        backoff = 0.1
        while not stopping.is_set():
            free = await self._slots.wait_free()
            try:
                messages = await self._sub.fetch(min(free, MAX_FETCH), timeout=FETCH_WAIT)
            except TimeoutError:
                self.last_poll = time.monotonic()
                continue
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
            for msg in messages:
                if stopping.is_set():
                    await msg.nak()  # fetched while stopping: hand it straight back
                    continue
                self._slots.take()
                await self._dispatch(msg)
