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
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from importlib import metadata
from typing import Any, Protocol

import grpc
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue
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
from prometheus_client.exposition import choose_encoder

from conveyor import jetstream, subjects
from conveyor.interceptors import CachingInterceptor

log = logging.getLogger(__name__)

TASK_BUCKETS = (
    *(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    *(30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0),
)
"""Run time and queue wait: from milliseconds (a text transform) to an hour (a backlog)."""
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PROBE_INTERVAL = 5.0
"""Seconds between two reads of JetStream state (queue depth, apply lag)."""
REQUEST_TIMEOUT = 10.0
"""A scrape connection that sends no complete request within this is dropped."""


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

    async def serve(self, listen: str) -> None:
        """Serves ``/metrics`` on ``listen`` (host:port, port 0 picks one); "" serves none."""
        if listen:
            await self.endpoint.start(listen)
            log.info("%s metrics on http://%s/metrics", self.service, self.address)

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
        counter = self._by_event.get(kind)
        if counter is not None:
            counter.labels(task_type).inc()


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
            "conveyor_store_watchers", "WatchTask streams open on this store", registry=r
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


class MetricsEndpoint:
    """A minimal HTTP/1.1 server on the event loop answering ``GET /metrics``.

    An asyncio server rather than prometheus-client's thread: it opens and closes with
    the service, at once, and needs no locking around what it reads.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.address: str | None = None
        self._server: asyncio.Server | None = None

    async def start(self, listen: str) -> None:
        """Listens on host:port; raises OSError with the address when it cannot."""
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        try:
            self._server = await asyncio.start_server(
                self._handle, host if host not in ("", "0.0.0.0") else None, int(port)
            )
        except OSError as exc:
            raise OSError(f"cannot serve metrics on {listen}: {exc.strerror or exc}") from exc
        bound = self._server.sockets[0].getsockname()[1]
        shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
        self.address = f"{shown}:{bound}"

    async def stop(self) -> None:
        """Stops listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            writer.write(self.respond(head))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def respond(self, head: bytes) -> bytes:
        """The whole HTTP response to a request head."""
        lines = head.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        }
        if method not in ("GET", "HEAD"):
            return _http(405, "text/plain", b"only GET\n", method)
        if path not in ("/metrics", "/"):
            return _http(404, "text/plain", b"metrics are on /metrics\n", method)
        encoder, content_type = choose_encoder(headers.get("accept", ""))
        return _http(200, content_type, encoder(self.registry), method)


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}


def _http(status: int, content_type: str, body: bytes, method: str) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + (b"" if method == "HEAD" else body)


class MetricsInterceptor(CachingInterceptor):
    """Counts every gRPC call by method and status code, and times unary calls.

    Installed before the ErrorInterceptor, so it sees the status that one chose.
    """

    def __init__(self, metrics: ServiceMetrics) -> None:
        super().__init__()
        self._metrics = metrics
        self._counters: dict[tuple[str, str], Any] = {}
        self._timers: dict[str, Any] = {}

    def wrap(self, handler: grpc.RpcMethodHandler, full_method: str) -> grpc.RpcMethodHandler:
        method = full_method.lstrip("/")
        for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            inner = getattr(handler, kind)
            if inner is not None:
                timed = kind == "unary_unary"
                return handler._replace(**{kind: self._wrap(inner, method, timed)})
        return handler

    def _wrap(self, inner: Any, method: str, timed: bool) -> Any:
        record = self._record

        if inspect.isasyncgenfunction(inner):

            async def streaming(request: Any, context: Any) -> Any:
                outcome: BaseException | None = None
                try:
                    async for item in inner(request, context):
                        yield item
                except BaseException as exc:
                    outcome = exc
                    raise
                finally:
                    record(method, context, outcome, None)

            return streaming

        async def call(request: Any, context: Any) -> Any:
            start = time.perf_counter()
            outcome: BaseException | None = None
            try:
                return await inner(request, context)
            except BaseException as exc:
                outcome = exc
                raise
            finally:
                record(method, context, outcome, time.perf_counter() - start if timed else None)

        return call

    def _record(
        self, method: str, context: Any, outcome: BaseException | None, elapsed: float | None
    ) -> None:
        code = _status_code(context, outcome)
        counter = self._counters.get((method, code))
        if counter is None:
            counter = self._counters[method, code] = self._metrics.grpc_requests.labels(
                method, code
            )
        counter.inc()
        if elapsed is not None:
            timer = self._timers.get(method)
            if timer is None:
                timer = self._timers[method] = self._metrics.grpc_duration.labels(method)
            timer.observe(elapsed)


def _status_code(context: Any, outcome: BaseException | None) -> str:
    """The status a call ended with: the one set on its context (abort sets it), else
    what its exception means."""
    try:
        code = context.code()
    except Exception:  # pragma: no cover - code() is experimental in grpc.aio
        code = None
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if isinstance(code, int) and not isinstance(code, bool):
        for status in grpc.StatusCode:
            if status.value[0] == code:
                return str(status.name)
    if outcome is None:
        return "OK"
    if isinstance(outcome, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    return "UNKNOWN"


async def every(interval: float, poll: Callable[[], Awaitable[None]], what: str) -> None:
    """Calls ``poll`` now and then every ``interval`` seconds until cancelled; a failed
    round is logged and the next one tried."""
    while True:
        try:
            await poll()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("reading %s failed: %s", what, exc)
        await asyncio.sleep(interval)


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
        names = await jetstream.keys(self._types)
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
