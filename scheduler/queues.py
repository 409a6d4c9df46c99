"""The scheduler's queue probe: each task type's queue, read from its JetStream consumers."""

from __future__ import annotations

import contextlib

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from conveyor import buckets, subjects
from conveyor.metrics import PROBE_INTERVAL, SchedulerMetrics, every


class QueueProbe:
    """Reads each task type's queue from its JetStream consumers into the scheduler's
    gauges. Types come from the registry bucket, so a type no worker serves any more
    still shows its queue growing."""

    def __init__(
        self,
        js: JetStreamContext,
        types: KeyValue,
        metrics: SchedulerMetrics,
        interval: float = PROBE_INTERVAL,
    ) -> None:
        self._js = js
        self._types = types
        self._metrics = metrics
        self.interval = interval
        self._shown: set[tuple[str, str]] = set()

    async def run(self) -> None:
        """Polls until cancelled."""
        await every(self.interval, self.poll, "queue depths")

    async def poll(self) -> None:
        """One reading of every type's consumers."""
        names = await buckets.keys(self._types)
        m = self._metrics
        shown: set[tuple[str, str]] = set()
        for task_type in sorted(names):
            for priority in dict.fromkeys(subjects.PRIORITY_TOKENS.values()):
                consumer = subjects.worker_consumer(task_type, priority)
                try:
                    info = await self._js.consumer_info(subjects.STREAM_TASKS, consumer)
                except NotFoundError:
                    continue
                m.queue_depth.labels(task_type, priority).set(info.num_pending or 0)
                m.queue_unacked.labels(task_type, priority).set(info.num_ack_pending or 0)
                m.queue_redelivered.labels(task_type, priority).set(info.num_redelivered or 0)
                shown.add((task_type, priority))
        for gone in self._shown - shown:
            for gauge in (m.queue_depth, m.queue_unacked, m.queue_redelivered):
                with contextlib.suppress(KeyError):
                    gauge.remove(*gone)
        self._shown = shown
