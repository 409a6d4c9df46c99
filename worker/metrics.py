"""The worker's metrics, one middleware kept out of the consume loop and the runner.

:class:`Metrics`, the outermost middleware, times each attempt, records how long its task
waited in the queue and keeps the in-flight gauge (``around``); and it counts each event
once the stream recorded it (``after_event``), so the counters agree with what the store
records: every started, completed, retrying (``conveyor_tasks_retried_total``), failed (a
dead letter) and cancelled event, including those decided before a handler runs (a task
cancelled while queued, a worker lost on the last attempt).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.metrics import WorkerMetrics
from conveyor.pull import delivery_count, stored_at
from worker.middleware import Call, Job, Middleware


class Metrics(Middleware):
    """Run time, queue wait and in-flight count of every attempt, and the events
    recorded, by type.

    Queue wait is measured on a task's first delivery only, from the time JetStream
    stored the message (for a delayed task: when its schedule fired) to the start. Later
    deliveries wait out a retry backoff on purpose, which is not queueing.
    """

    def __init__(self, metrics: WorkerMetrics) -> None:
        self._metrics = metrics
        self._series: dict[str, _Series] = {}
        self._counters: dict[tuple[str, str], Any] = {}

    def _of(self, task_type: str) -> _Series:
        """The type's series, looked up once: ``labels()`` takes a lock and builds a key
        on every call, which every task paid three times."""
        series = self._series.get(task_type)
        if series is None:
            m = self._metrics
            series = _Series(
                m.queue_wait.labels(task_type),
                m.in_flight.labels(task_type),
                m.run_duration.labels(task_type),
            )
            self._series[task_type] = series
        return series

    async def around(self, job: Job, call_next: Call) -> tasks_pb2.TaskResult:
        series = self._of(job.message.type)
        waited = _waited(job)
        if waited is not None:
            series.queue_wait.observe(max(0.0, waited))
        in_flight = series.in_flight
        in_flight.inc()
        start = time.perf_counter()
        try:
            return await call_next(job)
        finally:
            in_flight.dec()
            series.run_duration.observe(time.perf_counter() - start)

    def after_event(self, message: events_pb2.TaskMessage, kind: str) -> None:
        key = (message.type, kind)
        try:
            counter = self._counters[key]
        except KeyError:
            counter = self._counters[key] = self._metrics.event_counter(*key)
        if counter is not None:
            counter.inc()


@dataclass(frozen=True, slots=True)
class _Series:
    """One type's series of the attempts' metrics."""

    queue_wait: Any
    in_flight: Any
    run_duration: Any


def _waited(job: Job) -> float | None:
    """Seconds from entering the queue to now, for a task's first delivery; None for a
    later one."""
    try:
        if delivery_count(job.msg) != 1:
            return None
        stored = stored_at(job.msg)
    except Exception:  # not a JetStream message (a unit test's stand-in)
        return None
    if stored is None:
        if not job.message.HasField("create_time"):
            return None
        stored = job.message.create_time.ToNanoseconds() / 1e9
    return time.time() - stored
