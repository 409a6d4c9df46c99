"""The metric families: what every service exports, and each service's own."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)

from conveyor.config import TlsSettings
from conveyor.metrics.endpoint import MetricsEndpoint
from conveyor.tls import CertificateFiles

log = logging.getLogger(__name__)

TASK_BUCKETS = (
    *(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    *(30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0),
)
"""Run time and queue wait: from milliseconds (a text transform) to an hour (a backlog)."""
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _version() -> str:
    try:
        return metadata.version("conveyor")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


class ServiceMetrics:
    """A service's registry with what every service exports: gRPC calls, the NATS
    connection and process figures; ``serve`` exposes it on ``/metrics``."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        Info("conveyor_build", "The Conveyor service and its version", registry=registry).info(
            {"service": service, "version": _version()}
        )
        self.grpc_requests = Counter(
            "conveyor_grpc_requests_total",
            "gRPC calls handled, by full method name and status code",
            ["method", "code"],
            registry=registry,
        )
        self.grpc_duration = Histogram(
            "conveyor_grpc_request_duration_seconds",
            "Time to answer a unary gRPC call, by full method name",
            ["method"],
            buckets=RPC_BUCKETS,
            registry=registry,
        )
        self.nats_reconnects = Counter(
            "conveyor_nats_reconnects_total",
            "Times the NATS connection was re-established after it was lost",
            registry=registry,
        )
        self.nats_connected = Gauge(
            "conveyor_nats_connected",
            "1 while the NATS connection is up, 0 while it is reconnecting",
            registry=registry,
        )
        self.endpoint = MetricsEndpoint(registry)

    @property
    def address(self) -> str | None:
        """Where ``/metrics`` is served (host:port), or None when it is not."""
        return self.endpoint.address

    async def serve(self, listen: str, tls: TlsSettings | None = None) -> None:
        """Serves ``/metrics`` on ``listen`` (host:port, port 0 picks one); "" serves none.
        Over TLS when ``tls`` has a certificate (never asking for a client's: scrapers and
        probes present none)."""
        if listen:
            files = CertificateFiles(tls.cert, tls.key) if tls and tls.enabled else None
            await self.endpoint.start(listen, files.ssl_context() if files else None)
            scheme = "https" if files else "http"
            log.info("%s metrics on %s://%s/metrics", self.service, scheme, self.address)

    async def close(self) -> None:
        """Stops serving ``/metrics``."""
        await self.endpoint.stop()

    def nats_changed(self, connected: bool, reconnect: bool = True) -> None:
        """Records the NATS connection going down or coming (back) up."""
        if connected and reconnect:
            self.nats_reconnects.inc()
        self.nats_connected.set(1 if connected else 0)


class GatewayMetrics(ServiceMetrics):
    """The gateway's metrics: tasks accepted."""

    def __init__(self) -> None:
        super().__init__("gateway")
        self.submitted = Counter(
            "conveyor_tasks_submitted_total",
            "Tasks accepted (durably queued), by type",
            ["type"],
            registry=self.registry,
        )
        self.deduplicated = Counter(
            "conveyor_tasks_deduplicated_total",
            "Submits answered with an existing task by idempotency key, by type",
            ["type"],
            registry=self.registry,
        )
        self._children: dict[tuple[str, bool], Any] = {}
        """Labelled counters by (type, deduplicated): types are the catalog's, bounded."""
        limit_labels = ["limit", "type"]
        self.refused = Counter(
            "conveyor_submits_refused_total",
            "Submits refused with RESOURCE_EXHAUSTED, by the limit they would pass "
            "(the CONVEYOR_ variable) and type (per-type limits only)",
            limit_labels,
            registry=self.registry,
        )
        self.queue_limit = Gauge(
            "conveyor_queue_limit",
            "A queue limit submits are checked against, by limit and type (per-type only)",
            limit_labels,
            registry=self.registry,
        )
        self.queue_limit_used = Gauge(
            "conveyor_queue_limit_used",
            "How much of a queue limit is used (tasks or bytes, as the limit counts)",
            limit_labels,
            registry=self.registry,
        )

    def count_submitted(self, accepted: Iterable[tuple[str, bool]]) -> None:
        """Counts accepted (type, deduplicated) pairs."""
        children = self._children
        for key in accepted:
            child = children.get(key)
            if child is None:
                task_type, deduplicated = key
                counter = self.deduplicated if deduplicated else self.submitted
                child = children[key] = counter.labels(task_type)
            child.inc()

    def track_limit(
        self, limit: str, task_type: str, maximum: int, used: Callable[[], int]
    ) -> None:
        """Exports a limit in force (0, no limit, is left out) and how much of it is
        used, read from ``used`` at every scrape."""
        if maximum > 0:
            self.queue_limit.labels(limit, task_type).set(maximum)
            self.queue_limit_used.labels(limit, task_type).set_function(used)
            self.refused.labels(limit, task_type)

    def count_refused(self, limit: str, task_type: str) -> None:
        """Counts a submit refused at a limit."""
        self.refused.labels(limit, task_type).inc()


class WorkerMetrics(ServiceMetrics):
    """A worker's metrics: attempts and outcomes by type, run time, queue wait, load."""

    def __init__(self, concurrency: int) -> None:
        super().__init__("worker")
        r = self.registry

        def by_type(name: str, text: str) -> Counter:
            return Counter(name, text, ["type"], registry=r)

        self.started = by_type("conveyor_tasks_started_total", "Attempts started, by type")
        self.completed = by_type("conveyor_tasks_completed_total", "Tasks completed, by type")
        self.failed = by_type(
            "conveyor_tasks_failed_total", "Tasks failed for good (dead letters), by type"
        )
        self.retried = by_type(
            "conveyor_tasks_retried_total", "Failed attempts scheduled to run again, by type"
        )
        self.cancelled = by_type("conveyor_tasks_cancelled_total", "Tasks cancelled, by type")
        self.run_duration = Histogram(
            "conveyor_task_run_duration_seconds",
            "Time one attempt's handler ran, whatever its outcome, by type",
            ["type"],
            buckets=TASK_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "conveyor_task_queue_wait_seconds",
            "Time from entering the queue to the start of its first delivery, by type",
            ["type"],
            buckets=TASK_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "conveyor_worker_tasks_in_flight",
            "Attempts this worker is running now, by type",
            ["type"],
            registry=r,
        )
        self.concurrency = Gauge(
            "conveyor_worker_concurrency", "Attempts this worker runs at most at once", registry=r
        )
        self.concurrency.set(concurrency)
        self.stalled_loops = Gauge(
            "conveyor_worker_stalled_consume_loops",
            "Consume loops that stopped fetching; the worker is NOT_SERVING while any has",
            registry=r,
        )
        self._by_event = {
            "started": self.started,
            "completed": self.completed,
            "failed": self.failed,
            "retrying": self.retried,
            "cancelled": self.cancelled,
        }

    def serve_types(self, task_types: Iterable[str]) -> None:
        """Exports every per-type series at 0 from the start, so rates and alerts see the
        first increase and a type with no activity yet."""
        for task_type in task_types:
            for counter in self._by_event.values():
                counter.labels(task_type)
            self.run_duration.labels(task_type)
            self.queue_wait.labels(task_type)
            self.in_flight.labels(task_type)

    def count_event(self, task_type: str, kind: str) -> None:
        """Counts a published task event by its kind (``started``, ``completed``, ...)."""
        counter = self.event_counter(task_type, kind)
        if counter is not None:
            counter.inc()

    def event_counter(self, task_type: str, kind: str) -> Any:
        """The series counting the type's events of ``kind``; None for a kind not counted
        (``progressed``). Callers may keep it: it stays the same series."""
        counter = self._by_event.get(kind)
        return counter.labels(task_type) if counter is not None else None


class AppliedState(Protocol):
    """What the store's metrics read from its watch hub."""

    @property
    def applied_sequence(self) -> int: ...

    @property
    def watchers(self) -> int: ...


class StoreMetrics(ServiceMetrics):
    """The store's metrics: how far applying the event stream is behind."""

    def __init__(self) -> None:
        super().__init__("store")
        r = self.registry
        self.applied_sequence = Gauge(
            "conveyor_store_applied_sequence",
            "EVENTS stream sequence applied to the database so far",
            registry=r,
        )
        self.lag_events = Gauge(
            "conveyor_store_apply_lag_events",
            "Events in the EVENTS stream not yet applied to the database",
            registry=r,
        )
        self.lag_seconds = Gauge(
            "conveyor_store_apply_lag_seconds",
            "Age of the oldest event not yet applied to the database; 0 when caught up",
            registry=r,
        )
        self.watchers = Gauge(
            "conveyor_store_watchers",
            "WatchTask and WatchTasks streams open on this store",
            registry=r,
        )
        self.purged_tasks = Counter(
            "conveyor_store_purged_tasks_total",
            "Finished tasks deleted from the database, by reason (retention, delete, purge)",
            ["reason"],
            registry=r,
        )
        self.purged_rows = Counter(
            "conveyor_store_purged_rows_total",
            "Rows deleted from the database with purged tasks, by table",
            ["table"],
            registry=r,
        )
        self.refused_events = Counter(
            "conveyor_store_refused_events_total",
            "Events on EVENTS that no legitimate publisher can produce, acknowledged and "
            "not applied, by reason (store.screen)",
            ["reason"],
            registry=r,
        )
        self.leader = Gauge(
            "conveyor_store_leader",
            "1 while this replica holds the writer lease and applies events, 0 on a standby",
            registry=r,
        )
        self.takeovers = Counter(
            "conveyor_store_takeovers_total",
            "Times this replica took the writer lease (its first included)",
            registry=r,
        )
        self.fenced_batches = Counter(
            "conveyor_store_fenced_batches_total",
            "Batches refused by the database because a newer writer holds the lease",
            registry=r,
        )
        for reason in ("retention", "delete", "purge"):
            self.purged_tasks.labels(reason)  # a series from the start, at 0
        for table in ("tasks", "task_history", "task_labels"):
            self.purged_rows.labels(table)

    def track(self, state: AppliedState) -> None:
        """Reads the applied sequence and open watches from ``state`` at every scrape."""
        self.applied_sequence.set_function(lambda: state.applied_sequence)
        self.watchers.set_function(lambda: state.watchers)


class SchedulerMetrics(ServiceMetrics):
    """The scheduler's metrics: every task type's queue, read from JetStream."""

    def __init__(self) -> None:
        super().__init__("scheduler")
        labels = ["type", "priority"]
        self.queue_depth = Gauge(
            "conveyor_queue_depth",
            "Tasks queued and not yet handed to any worker (consumer lag), by type and priority",
            labels,
            registry=self.registry,
        )
        self.queue_unacked = Gauge(
            "conveyor_queue_unacked",
            "Tasks handed to a worker and not yet acknowledged (running, or waiting for a "
            "retry), by type and priority",
            labels,
            registry=self.registry,
        )
        self.queue_redelivered = Gauge(
            "conveyor_queue_redelivered",
            "Unacknowledged tasks delivered more than once, by type and priority",
            labels,
            registry=self.registry,
        )
