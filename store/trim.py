"""Removing the events the store has applied from EVENTS, so the stream holds what the
store is behind by and little more, however many tasks are queued or done.

Applied events are kept for ``CONVEYOR_EVENTS_KEEP_SECONDS`` (a lost database can be
rebuilt from them, store.history), and removed sooner, all of them, once EVENTS is past
half its ``CONVEYOR_EVENTS_MAX_BYTES``: then only events not yet applied remain, and the
outcomes of running tasks always find room. The event at the applied sequence itself
stays, so store.history can still tell whether the stream is the one applied.
"""

from __future__ import annotations

import logging
import time

from nats.js import JetStreamContext

from conveyor import subjects
from conveyor.config import StreamLimits
from conveyor.metrics import every
from store import history
from store.repository import TaskRepository

log = logging.getLogger(__name__)

TRIM_INTERVAL = 1.0
"""Seconds between two looks at how full EVENTS is."""
AGE_TRIM_INTERVAL = 60.0
"""Seconds between two removals of applied events past their keeping time."""
PRESSURE_SHARE = 0.5
"""Past this share of its size, EVENTS loses every applied event at once."""


class EventTrimmer:
    """Purges applied events from EVENTS, by age, or all of them under pressure."""

    def __init__(
        self,
        js: JetStreamContext,
        repository: TaskRepository,
        limits: StreamLimits,
        interval: float = TRIM_INTERVAL,
    ) -> None:
        self._js = js
        self._repository = repository
        self._limits = limits
        self.interval = interval
        self._aged_at = -float("inf")

    async def run(self) -> None:
        """Trims until cancelled."""

        async def trim() -> None:
            await self.trim_once()

        await every(self.interval, trim, "EVENTS to trim")

    async def trim_once(self) -> int:
        """One look at EVENTS; returns how many applied events were removed."""
        applied, applied_time = await self._repository.cursor()
        state = (await self._js.stream_info(subjects.STREAM_EVENTS)).state
        if applied <= state.first_seq or applied > state.last_seq:
            return 0
        # The stream must be the history the cursor was applied from (store.history): a
        # stream made again has other events at these sequences, not applied ones.
        if applied_time is not None and await history.time_at(self._js, applied) != applied_time:
            return 0
        below = applied
        max_bytes = self._limits.events_max_bytes
        if not max_bytes or state.bytes <= max_bytes * PRESSURE_SHARE:
            if time.monotonic() - self._aged_at < AGE_TRIM_INTERVAL:
                return 0
            self._aged_at = time.monotonic()
            cutoff_us = int((time.time() - self._limits.events_keep_seconds) * 1_000_000)
            below = await history.first_newer(
                lambda s: history.time_from(self._js, s), state.first_seq, applied - 1, cutoff_us
            )
        if below <= state.first_seq:
            return 0
        await self._js.purge_stream(subjects.STREAM_EVENTS, seq=below)
        removed = below - state.first_seq
        log.debug("removed the applied events below sequence %d from EVENTS", below)
        return removed
