"""The store's lag probe: how far applying the EVENTS stream is behind."""

from __future__ import annotations

import datetime as dt

from nats.js import JetStreamContext

from conveyor import subjects
from conveyor.metrics import PROBE_INTERVAL, AppliedState, StoreMetrics, every


class EventLagProbe:
    """Measures how far the store's applied sequence is behind the EVENTS stream."""

    def __init__(
        self,
        js: JetStreamContext,
        state: AppliedState,
        metrics: StoreMetrics,
        interval: float = PROBE_INTERVAL,
    ) -> None:
        self._js = js
        self._state = state
        self._metrics = metrics
        self.interval = interval

    async def run(self) -> None:
        """Polls until cancelled."""
        await every(self.interval, self.poll, "the store's apply lag")

    async def poll(self) -> None:
        """One reading: events behind, and the age of the oldest of them."""
        applied = self._state.applied_sequence
        info = await self._js.stream_info(subjects.STREAM_EVENTS)
        behind = max(0, info.state.last_seq - applied)
        age = 0.0
        if behind:
            oldest = await self._js.get_msg(
                subjects.STREAM_EVENTS,
                seq=applied + 1,
                subject=f"{subjects.EVENTS_PREFIX}.>",
                next=True,
            )
            if oldest.time is not None:
                age = max(0.0, (dt.datetime.now(dt.UTC) - oldest.time).total_seconds())
        self._metrics.lag_events.set(behind)
        self._metrics.lag_seconds.set(age)
