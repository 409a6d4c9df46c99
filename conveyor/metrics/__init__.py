"""Every Prometheus metric Conveyor exports, and the ``/metrics`` endpoint serving them.

Each running service owns one :class:`ServiceMetrics` (or its subclass for that service)
with its own registry, so services started in one process, as the tests do, keep their
numbers apart. Names follow Prometheus conventions: a ``conveyor_`` prefix, ``_total`` on
counters, ``_seconds`` on durations. Labels are bounded (task type, priority, gRPC method
and code); a task id is never a label.

Where each number comes from:

- gateway: tasks accepted by type (``conveyor_tasks_submitted_total``);
- worker: attempts started and outcomes recorded, by type, counted from the events the
  worker publishes (``worker.metrics``), run time and queue wait, tasks in flight;
- store: how far applying the EVENTS stream is behind (events and seconds);
- scheduler: queue depth per type and priority, read from the JetStream consumers;
- every service: gRPC calls by method and code, NATS reconnects, process figures.

The families live in ``families``, the HTTP endpoint in ``endpoint``, the gRPC interceptor
in ``interceptor``; each probe reading JetStream lives with the service that runs it
(``store.lag``, ``scheduler.queues``).
"""

from __future__ import annotations

from conveyor.metrics.endpoint import REQUEST_TIMEOUT, MetricsEndpoint
from conveyor.metrics.families import (
    RPC_BUCKETS,
    TASK_BUCKETS,
    AppliedState,
    GatewayMetrics,
    SchedulerMetrics,
    ServiceMetrics,
    StoreMetrics,
    WorkerMetrics,
)
from conveyor.metrics.interceptor import MetricsInterceptor
from conveyor.metrics.polling import PROBE_INTERVAL, every

__all__ = [
    "PROBE_INTERVAL",
    "REQUEST_TIMEOUT",
    "RPC_BUCKETS",
    "TASK_BUCKETS",
    "AppliedState",
    "GatewayMetrics",
    "MetricsEndpoint",
    "MetricsInterceptor",
    "SchedulerMetrics",
    "ServiceMetrics",
    "StoreMetrics",
    "WorkerMetrics",
    "every",
]
