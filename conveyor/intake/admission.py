"""Backpressure: submits past a queue limit are refused with RESOURCE_EXHAUSTED naming it.

The limits (``StreamLimits``) are checked against JetStream's own counts, read at most
every ``REFRESH_SECONDS`` and shared by concurrent submits. A submit let through is added
to them at once (and taken off again if its publish fails), so one gateway does not
overshoot between two readings; several gateways can together pass a limit by what they
accept within one reading. TASKS itself cannot refuse: a stream that allows message
schedules (delayed tasks) cannot use ``discard new``, and ``discard old`` would drop
queued tasks.

EVENTS is checked too: submits stop at three quarters of its size, so the last quarter
stays for the outcomes of the tasks already queued, and draining the queue can always be
recorded. EVENTS does refuse at its size (``discard new``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from conveyor import subjects
from conveyor.config import StreamLimits
from conveyor.errors import ResourceExhausted
from conveyor.metrics import GatewayMetrics

log = logging.getLogger(__name__)
T = TypeVar("T")

REFRESH_SECONDS = 0.5
"""How old JetStream's counts may be when a submit is checked against them."""
EVENTS_SUBMIT_SHARE = 0.75
"""Share of EVENTS' size that submits may fill; the rest is kept for outcomes."""
WARN_EVERY = 60.0
"""Seconds between two warnings that JetStream's counts could not be read."""
STORED_OVERHEAD = 256
"""Bytes a stream stores per message besides its data (subject, headers, record), at most
about: what this gateway adds between two readings is counted with it."""
PRIORITIES = tuple(dict.fromkeys(subjects.PRIORITY_TOKENS.values()))

QUEUE_MAX_TASKS = "CONVEYOR_QUEUE_MAX_TASKS"
QUEUE_MAX_BYTES = "CONVEYOR_QUEUE_MAX_BYTES"
QUEUE_MAX_TASKS_PER_TYPE = "CONVEYOR_QUEUE_MAX_TASKS_PER_TYPE"
EVENTS_MAX_BYTES = "CONVEYOR_EVENTS_MAX_BYTES"


@dataclass
class _Reading:
    """Counts read from JetStream, plus what this gateway added since."""

    tasks: int = 0
    task_bytes: int = 0
    event_bytes: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


class CachedReading(Generic[T]):
    """A count read from JetStream at most every ``REFRESH_SECONDS``, one read at a time,
    each reading handed to ``apply``. Only the first reading is waited for; later ones are
    made in the background, so a submit does not wait for JetStream's counts."""

    def __init__(
        self,
        read: Callable[[], Awaitable[T]],
        apply: Callable[[T], None],
        on_start: Callable[[], None],
    ) -> None:
        self._read = read
        self._apply = apply
        self._on_start = on_start
        self._at = -float("inf")
        self._reading: asyncio.Task[None] | None = None
        self._loaded = False
        self._warned_at = -float("inf")

    async def ensure(self, wait: bool = False) -> None:
        """Starts a reading if the last one is stale (always with ``wait``), and waits
        for it with ``wait`` or when there has been none yet."""
        if self._reading is None or self._reading.done():
            if not wait and time.monotonic() - self._at <= REFRESH_SECONDS:
                return
            self._at = time.monotonic()
            self._on_start()
            self._reading = asyncio.create_task(self._run())
            self._reading.add_done_callback(self._done)
        if wait or not self._loaded:
            await asyncio.shield(self._reading)

    async def _run(self) -> None:
        self._apply(await self._read())
        self._loaded = True

    def _done(self, reading: asyncio.Task[None]) -> None:
        if reading.cancelled() or reading.exception() is None:
            return
        if time.monotonic() - self._warned_at > WARN_EVERY:  # not once per submit
            self._warned_at = time.monotonic()
            log.warning(
                "reading the queue's size failed (limits use the last reading): %r",
                reading.exception(),
            )


def _past(total: int, most: int) -> bool:
    """Whether ``total`` passes the limit ``most`` (0 or less: no limit)."""
    return 0 < most < total


class Admission:
    """Checks each submit against the queue limits before anything is published."""

    def __init__(
        self, js: JetStreamContext, limits: StreamLimits, metrics: GatewayMetrics | None = None
    ) -> None:
        self._js = js
        self._limits = limits
        # The scheduler's periodic submits are checked too, but only the gateway exports.
        self._metrics = metrics = metrics or GatewayMetrics()
        self._now = _Reading()
        # What was admitted since the reading in flight began: it may be missing from
        # that reading, so it is added to it.
        self._since = _Reading()
        self._streams = CachedReading(self._read_streams, self._apply_streams, self._streams_start)
        self._types: dict[str, CachedReading[int]] = {}
        now = self._now
        metrics.track_limit(QUEUE_MAX_TASKS, "", limits.queue_max_tasks, lambda: now.tasks)
        metrics.track_limit(QUEUE_MAX_BYTES, "", limits.queue_max_bytes, lambda: now.task_bytes)
        metrics.track_limit(
            EVENTS_MAX_BYTES,
            "",
            int(limits.events_max_bytes * EVENTS_SUBMIT_SHARE),
            lambda: now.event_bytes,
        )

    async def admit(self, sizes: list[tuple[str, int]]) -> None:
        """Counts tasks of these (type, bytes) as queued, or raises ResourceExhausted if
        that would pass a limit. A limit JetStream could not be asked about is not checked
        (EVENTS still refuses at its size)."""
        try:
            await self._refresh([task_type for task_type, _ in sizes])
        except Exception:
            return  # never read (logged once a minute): the limits cannot be checked
        count, size = len(sizes), sum(n + STORED_OVERHEAD for _, n in sizes)
        now, limits = self._now, self._limits
        # Each refusal's text is made only when refusing: this runs for every submit.
        most = limits.queue_max_tasks
        if _past(now.tasks + count, most):
            self._refuse(QUEUE_MAX_TASKS, "", now.tasks + count, f"{most} tasks")
        most = limits.queue_max_bytes
        if _past(now.task_bytes + size, most):
            self._refuse(QUEUE_MAX_BYTES, "", now.task_bytes + size, f"{most} bytes")
        if _past(now.event_bytes + size, int(limits.events_max_bytes * EVENTS_SUBMIT_SHARE)):
            self._refuse(
                EVENTS_MAX_BYTES,
                "",
                now.event_bytes + size,
                f"{limits.events_max_bytes} bytes, of which submits may fill "
                f"{EVENTS_SUBMIT_SHARE:.0%}: the store is behind",
            )
        most = limits.queue_max_tasks_per_type
        if most:
            for task_type, added in Counter(t for t, _ in sizes).items():
                total = now.by_type.get(task_type, 0) + added
                if _past(total, most):
                    what = f"{most} {task_type} tasks"
                    self._refuse(QUEUE_MAX_TASKS_PER_TYPE, task_type, total, what)
        self._add(sizes, 1)

    def release(self, sizes: list[tuple[str, int]]) -> None:
        """Takes admitted tasks off again: their publish failed."""
        self._add(sizes, -1)

    def _add(self, sizes: list[tuple[str, int]], sign: int) -> None:
        for counts in (self._now, self._since):
            counts.tasks += sign * len(sizes)
            for task_type, size in sizes:
                counts.task_bytes += sign * (size + STORED_OVERHEAD)
                counts.event_bytes += sign * (size + STORED_OVERHEAD)
                counts.by_type[task_type] = counts.by_type.get(task_type, 0) + sign

    async def poll(self) -> None:
        """Reads the streams now (for the metrics, between submits)."""
        await self._refresh(list(self._types), wait=True)

    def _refuse(self, limit: str, task_type: str, total: int, what: str) -> None:
        self._metrics.count_refused(limit, task_type)
        raise ResourceExhausted(
            f"the queue is full: {total} would pass {limit}={what}; "
            "retry once the queue has drained",
            limit,
        )

    async def _refresh(self, task_types: list[str], wait: bool = False) -> None:
        await self._streams.ensure(wait)
        per_type = self._limits.queue_max_tasks_per_type
        if not per_type:
            return
        for task_type in dict.fromkeys(task_types):
            cached = self._types.get(task_type)
            if cached is None:
                cached = self._types[task_type] = CachedReading(
                    self._type_reader(task_type),
                    functools.partial(self._apply_type, task_type),
                    functools.partial(self._type_start, task_type),
                )
                self._metrics.track_limit(
                    QUEUE_MAX_TASKS_PER_TYPE,
                    task_type,
                    per_type,
                    functools.partial(self._type_used, task_type),
                )
            await cached.ensure(wait)

    def _streams_start(self) -> None:
        self._since.tasks = self._since.task_bytes = self._since.event_bytes = 0

    def _apply_streams(self, reading: tuple[int, int, int]) -> None:
        now, since = self._now, self._since
        now.tasks = reading[0] + since.tasks
        now.task_bytes = reading[1] + since.task_bytes
        now.event_bytes = reading[2] + since.event_bytes

    def _type_start(self, task_type: str) -> None:
        self._since.by_type[task_type] = 0

    def _apply_type(self, task_type: str, queued: int) -> None:
        self._now.by_type[task_type] = queued + self._since.by_type.get(task_type, 0)

    def _type_used(self, task_type: str) -> int:
        return self._now.by_type.get(task_type, 0)

    async def _read_streams(self) -> tuple[int, int, int]:
        tasks = await self._js.stream_info(subjects.STREAM_TASKS)
        events = await self._js.stream_info(subjects.STREAM_EVENTS)
        return tasks.state.messages, tasks.state.bytes, events.state.bytes

    def _type_reader(self, task_type: str) -> Callable[[], Awaitable[int]]:
        async def read() -> int:
            """Tasks of the type queued or running: waiting plus not yet acknowledged."""
            queued = 0
            for priority in PRIORITIES:
                try:
                    info = await self._js.consumer_info(
                        subjects.STREAM_TASKS, subjects.worker_consumer(task_type, priority)
                    )
                except NotFoundError:
                    continue
                queued += (info.num_pending or 0) + (info.num_ack_pending or 0)
            return queued

        return read
