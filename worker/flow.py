"""Flow control shared by every worker: paused queues, cluster-wide concurrency and rate
limits. State lives in KV buckets, so limits hold across any number of workers.

- Controls (paused, limits) are read from ``conveyor_queues`` through a KV watch.
- Concurrency: a task of a limited type runs only while its worker holds one of N lease
  keys ``slots.<type>.<i>``; leases are renewed while held and expire if the worker dies.
- Rate: one token bucket per type in ``rate.<type>``, updated by compare-and-set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from conveyor import buckets
from conveyor.api.queues.v1 import queues_pb2
from conveyor.lifecycle import cancel_and_wait

log = logging.getLogger(__name__)


class QueueControls:
    """Each type's paused flag and limits, kept current by a KV watch."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self._queues: dict[str, queues_pb2.Queue] = {}
        self._changed = asyncio.Condition()
        self._watch: asyncio.Task[None] | None = None
        self._loaded = asyncio.Event()

    async def start(self) -> None:
        self._watch = asyncio.create_task(self._follow(), name="queue-controls")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._loaded.wait(), 5.0)

    async def stop(self) -> None:
        if self._watch is not None:
            await cancel_and_wait(self._watch)

    async def _follow(self) -> None:
        await buckets.follow(self._kv, self._apply, self._loaded.set)

    async def _apply(self, key: str, value: bytes | None) -> None:
        if value is None:
            self._queues.pop(key, None)
        else:
            try:
                self._queues[key] = queues_pb2.Queue.FromString(value)
            except Exception:
                log.error("queue control %r is not a Queue; ignored", key)
                return
        async with self._changed:
            self._changed.notify_all()

    def paused(self, task_type: str) -> bool:
        queue = self._queues.get(task_type)
        return bool(queue and queue.paused)

    def limits(self, task_type: str) -> queues_pb2.QueueLimits:
        queue = self._queues.get(task_type)
        return queue.limits if queue else queues_pb2.QueueLimits()

    async def wait_resumed(self, task_type: str, stopping: asyncio.Event) -> None:
        """Returns once the type is not paused (or the worker is stopping)."""
        async with self._changed:
            while self.paused(task_type) and not stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 1.0)


@dataclass
class Admission:
    """What a round may fetch: ``batch`` tasks; for a limited type one, with the rate
    token and concurrency lease taken for it, refunded unless a task arrives (``used``)."""

    batch: int
    lease: Lease | None = None
    limited: bool = False
    used: bool = False


class Flow:
    """The flow controls a worker's consumers consult before fetching: each fetch round
    is admitted here, and what a round took and did not use is refunded here."""

    def __init__(self, queues: KeyValue, permits: KeyValue, holder: str, lease: float) -> None:
        self.controls = QueueControls(queues)
        self.semaphore = ClusterSemaphore(permits, holder, lease)
        self.rate = RateLimiter(permits)

    async def start(self) -> None:
        await self.controls.start()

    async def stop(self) -> None:
        await self.controls.stop()
        await self.semaphore.stop()

    async def admit(self, task_type: str, batch: int) -> Admission:
        """How many tasks a round may fetch under the type's cluster-wide limits, and the
        concurrency lease that goes with it (limited types fetch one at a time)."""
        limits = self.controls.limits(task_type)
        if limits.max_per_second > 0:
            wait = await self.rate.take(task_type, limits.max_per_second)
            if wait > 0:
                await asyncio.sleep(min(wait, 1.0))
                return Admission(0)
            batch = 1
        if limits.max_concurrency > 0:
            lease = await self.semaphore.acquire(task_type, limits.max_concurrency)
            if lease is None:
                if limits.max_per_second > 0:
                    await self.rate.give_back(task_type, limits.max_per_second)
                await asyncio.sleep(0.1)
                return Admission(0)
            return Admission(1, lease, limited=True)
        return Admission(batch, limited=limits.max_per_second > 0)

    async def refund(self, task_type: str, admission: Admission) -> None:
        """Gives back what a limited round took, unless a task came to use it."""
        if admission.used or not admission.limited:
            return
        limits = self.controls.limits(task_type)
        if limits.max_per_second > 0:
            await self.rate.give_back(task_type, limits.max_per_second)
        if admission.lease is not None:
            await self.semaphore.release(admission.lease)

    def release_later(self, lease: Lease) -> None:
        """Frees a task's concurrency lease once it is done (from a done callback)."""
        asyncio.create_task(self.semaphore.release(lease))  # noqa: RUF006


@dataclass
class Lease:
    """One held concurrency slot."""

    key: str
    revision: int


class ClusterSemaphore:
    """At most N tasks of a type run at once across all workers."""

    def __init__(self, kv: KeyValue, holder: str, lease_seconds: float) -> None:
        self._kv = kv
        self._holder = holder
        self._lease_seconds = lease_seconds
        self._held: dict[str, Lease] = {}
        self._renewer: asyncio.Task[None] | None = None

    def _value(self) -> bytes:
        expires = time.time() + self._lease_seconds
        return json.dumps({"holder": self._holder, "expires": expires}).encode()

    async def acquire(self, task_type: str, limit: int) -> Lease | None:
        """A lease on one of ``limit`` slots, or None when all are taken."""
        for index in range(limit):
            key = f"slots.{task_type}.{index}"
            taken: int | None
            try:
                taken = await self._kv.create(key, self._value())
            except KeyWrongLastSequenceError:
                taken = await self._take_over_expired(key)
            if taken is None:
                continue
            lease = Lease(key, taken)
            self._held[key] = lease
            self._ensure_renewer()
            return lease
        return None

    async def _take_over_expired(self, key: str) -> int | None:
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return None  # released a moment ago; the next round creates it
        try:
            expires = float(json.loads(entry.value or b"{}").get("expires", 0))
        except (ValueError, AttributeError):
            expires = 0.0
        if expires > time.time():
            return None
        try:
            # The holder died without releasing: its lease ran out, take it over.
            revision: int = await self._kv.update(key, self._value(), last=entry.revision)
            return revision
        except KeyWrongLastSequenceError:
            return None

    async def release(self, lease: Lease) -> None:
        """Frees the slot (unless the lease was lost meanwhile)."""
        current = self._held.pop(lease.key, lease)
        try:
            await self._kv.delete(lease.key, last=current.revision)
        except Exception as exc:  # lost or taken over: nothing to free
            log.debug("release of %s skipped: %s", lease.key, exc)

    def _ensure_renewer(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew(), name="lease-renewer")

    async def _renew(self) -> None:
        while self._held:
            await asyncio.sleep(self._lease_seconds / 3)
            for key, lease in list(self._held.items()):
                try:
                    lease.revision = await self._kv.update(key, self._value(), last=lease.revision)
                except Exception as exc:
                    log.warning("could not renew the lease %s: %s", key, exc)

    async def stop(self) -> None:
        if self._renewer:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        for lease in list(self._held.values()):
            await self.release(lease)


class RateLimiter:
    """A token bucket per type shared by all workers: ``rate`` starts per second, bursts
    of at most ``max(1, rate)``."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def take(self, task_type: str, rate: float) -> float:
        """Takes a token: 0.0 when granted, else the seconds to wait before asking again."""
        key = f"rate.{task_type}"
        capacity = max(1.0, rate)
        for _ in range(20):  # compare-and-set retries under contention
            now = time.time()
            try:
                entry = await self._kv.get(key)
                state = json.loads(entry.value or b"{}")
                tokens = min(
                    capacity, float(state["tokens"]) + (now - float(state["stamp"])) * rate
                )
                revision: int | None = entry.revision
            except (KeyNotFoundError, KeyError, ValueError):
                tokens, revision = capacity, None
            if tokens < 1.0:
                return (1.0 - tokens) / rate
            value = json.dumps({"tokens": tokens - 1.0, "stamp": now}).encode()
            try:
                if revision is None:
                    await self._kv.create(key, value)
                else:
                    await self._kv.update(key, value, last=revision)
                return 0.0
            except KeyWrongLastSequenceError:
                continue
        return 0.05

    async def give_back(self, task_type: str, rate: float) -> None:
        """Returns an unused token (a fetch that found nothing)."""
        key = f"rate.{task_type}"
        with contextlib.suppress(Exception):
            entry = await self._kv.get(key)
            state = json.loads(entry.value or b"{}")
            state["tokens"] = min(max(1.0, rate), state["tokens"] + 1.0)
            await self._kv.update(key, json.dumps(state).encode(), last=entry.revision)
