"""The scheduler process: ``python -m scheduler``.

Delayed tasks need no process of ours: the gateway queues them as NATS message schedules,
which the server itself fires at their time, across restarts. The scheduler runs the
background jobs that keep the system whole (see ``scheduler.reconcile``).
"""

from __future__ import annotations

import logging

import grpc
from nats.aio.client import Client as NATS

from conveyor import jetstream, subjects, tracing
from conveyor.api.tasks.v1 import tasks_pb2_grpc
from conveyor.config import SchedulerSettings, load_environ
from conveyor.exposure import Listener, tls_missing
from conveyor.intake.admission import Admission
from conveyor.intake.catalog import TypeCatalog
from conveyor.intake.submit import Submitter, task_finder
from conveyor.lifecycle import Lifecycle
from conveyor.metrics import SchedulerMetrics
from conveyor.renewing import service_channel
from conveyor.schedules import ScheduleBook, ScheduleWatch
from conveyor.server import Server, channel_options, run_service
from scheduler.periodic import PeriodicRunner
from scheduler.queues import QueueProbe
from scheduler.reconcile import Reconciler

log = logging.getLogger(__name__)


class Scheduler:
    """A running scheduler; ``start()`` then ``stop()``."""

    # Made by start(), which needs NATS.
    nc: NATS
    channel: grpc.aio.Channel
    catalog: TypeCatalog
    queue_probe: QueueProbe
    server: Server

    def __init__(self, settings: SchedulerSettings) -> None:
        self.settings = settings
        self.metrics = SchedulerMetrics()
        self._life = Lifecycle()

    @property
    def address(self) -> str:
        return self.server.address

    async def start(self) -> None:
        life = self._life
        tls = self.settings.common.tls
        await self.metrics.serve(self.settings.metrics_listen, tls)
        life.on_stop(self.metrics.close)
        common, role = self.settings.common, subjects.SCHEDULER
        self.nc, js = await jetstream.setup(common, "conveyor-scheduler", self.metrics, role)
        life.on_stop(jetstream.close, self.nc)
        buckets = await jetstream.ensure_buckets(js, common, jetstream.declares(common, role))
        keepalive = self.settings.common.grpc_keepalive_seconds
        self.channel = service_channel(
            self.settings.store_addr,
            tls,
            channel_options(4 * 1024 * 1024, keepalive),
            interceptors=tracing.client_interceptors(),
        )
        life.on_stop(self.channel.close)
        store = tasks_pb2_grpc.TaskServiceStub(self.channel)
        self.catalog = TypeCatalog(buckets[subjects.KV_TYPES])
        await self.catalog.start()
        life.on_stop(self.catalog.stop)
        submitter = Submitter(
            js,
            self.catalog,
            buckets[subjects.KV_IDEMPOTENCY],
            task_finder(store),
            admission=Admission(js, self.settings.common.stream_limits),
            source=subjects.SCHEDULER,
        )
        schedules_kv = buckets[subjects.KV_SCHEDULES]
        periodic = PeriodicRunner(
            ScheduleBook(schedules_kv), ScheduleWatch(schedules_kv), submitter, store
        )
        life.task(Reconciler(js, store).run(), "reconcile")
        life.task(periodic.run(), "schedules")
        types = buckets[subjects.KV_TYPES]
        self.queue_probe = QueueProbe(js, types, self.metrics)
        life.task(self.queue_probe.run(), "queue-metrics")
        self.server = Server(
            self.settings.listen,
            [],
            4 * 1024 * 1024,
            self.metrics,
            keepalive_seconds=keepalive,
            tls=tls,
        )
        await self.server.follow_nats(self.nc)
        await self.server.start()
        life.server(self.server)
        log.info("scheduler running, health on %s", self.address)

    async def stop(self) -> None:
        await self._life.stop(1.0)
        log.info("scheduler stopped")


def listeners(settings: SchedulerSettings) -> list[Listener]:
    """Where the scheduler listens: health and metrics, over TLS."""
    tls = settings.common.tls
    return [
        Listener("SCHEDULER_LISTEN", settings.listen, tls_missing(tls)),
        Listener("METRICS_LISTEN", settings.metrics_listen, tls_missing(tls)),
    ]


def main() -> None:
    """``python -m scheduler``: reads settings, sets up logging once and serves."""
    run_service("scheduler", load_environ(), SchedulerSettings.from_env, Scheduler, listeners)
