"""The store process: ``python -m store``."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import uuid

import grpc
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from conveyor import jetstream, subjects
from conveyor.api.store.v1 import quotas_pb2, quotas_pb2_grpc, watch_pb2
from conveyor.api.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from conveyor.auth.namespaces import NamespaceInterceptor
from conveyor.config import ConfigError, StoreSettings, load_environ
from conveyor.exposure import Listener, tls_missing
from conveyor.lifecycle import Lifecycle
from conveyor.logs import setup_logging
from conveyor.metrics import StoreMetrics
from conveyor.payloads import PayloadStore
from conveyor.server import Server, run, run_service
from store.consumer import EventApplier
from store.db import SchemaNotCurrent, create_engine, migrate, prepare_schema
from store.follow import Follower
from store.lag import EventLagProbe
from store.lease import WriterLease
from store.mux import WatchMux
from store.registrar import TypeRegistrar
from store.repository import TaskRepository
from store.retention import Purger, RetentionPolicy, payload_deleter
from store.roles import Roles
from store.screen import EventScreen, Refusals
from store.service import NamespaceCounts, StoreService
from store.trim import EventTrimmer
from store.watch import WatchHub

log = logging.getLogger(__name__)

SERVICE_NAME = tasks_pb2.DESCRIPTOR.services_by_name["TaskService"].full_name
WATCH_MUX_SERVICE = watch_pb2.DESCRIPTOR.services_by_name["WatchMuxService"].full_name
COUNT_SERVICE = quotas_pb2.DESCRIPTOR.services_by_name["NamespaceCountService"].full_name


class Store:
    """A running store; ``start()`` then ``stop()``. Tests use port 0."""

    # Made by start(), which needs NATS and the database.
    engine: AsyncEngine
    repository: TaskRepository
    nc: NATS
    js: JetStreamContext
    hub: WatchHub
    lag_probe: EventLagProbe
    trimmer: EventTrimmer
    purger: Purger
    roles: Roles
    server: Server
    # The writer's, while this replica is the writer (store.roles).
    applier: EventApplier | None = None
    _applying: asyncio.Task[None] | None = None

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self.metrics = StoreMetrics()
        self._life = Lifecycle()

    @property
    def address(self) -> str:
        return self.server.address

    async def start(self) -> None:
        life = self._life
        tls = self.settings.common.tls
        await self.metrics.serve(self.settings.metrics_listen, tls)
        life.on_stop(self.metrics.close)
        self.engine = create_engine(self.settings.database_url)
        life.on_stop(self.engine.dispose)
        await prepare_schema(self.engine, self.settings.migrate)
        self._refusals = Refusals(lambda r: self.metrics.refused_events.labels(r).inc())
        repository = TaskRepository(self.engine, self._refusals)
        self.repository = repository
        common = self.settings.common
        self.nc, js = await jetstream.setup(common, "conveyor-store", self.metrics, subjects.STORE)
        self.js = js
        life.on_stop(jetstream.close, self.nc)
        buckets = await jetstream.ensure_buckets(js, common)
        self.hub = WatchHub()
        self.metrics.track(self.hub)
        self.lag_probe = EventLagProbe(js, self.hub, self.metrics)
        life.task(self.lag_probe.run(), "apply-lag")
        self.trimmer = EventTrimmer(js, repository, common.stream_limits)
        self.server = Server(
            self.settings.listen,
            [SERVICE_NAME, WATCH_MUX_SERVICE, COUNT_SERVICE],
            self.settings.max_message_bytes,
            self.metrics,
            keepalive_seconds=common.grpc_keepalive_seconds,
            tls=tls,
            peers=tls.allowed_peers,
            # Each call is limited to the namespace its caller names. The store believes
            # the name because only Conveyor's own services can call it (mutual TLS):
            # the gateway names the namespace it authenticated the client in.
            inner=[NamespaceInterceptor(allow_all=True)],
        )
        payloads = PayloadStore(await jetstream.object_store(js, common))
        self.purger = Purger(
            self.engine,
            self.hub,
            buckets[subjects.KV_IDEMPOTENCY],
            self.metrics,
            delete_payloads=payload_deleter(payloads),
        )
        registrar = TypeRegistrar(self.nc, buckets[subjects.KV_TYPES])
        await registrar.start()
        life.on_stop(registrar.stop)
        lease = WriterLease(buckets[subjects.KV_STORE], _holder_id(), self.settings.lease_seconds)
        self.roles = Roles(
            lease,
            repository,
            self.hub,
            lambda: Follower(js, repository, self.hub),
            self._writer_duties,
            self.metrics,
        )
        await self.roles.start()
        life.on_stop(self.roles.stop)
        self._deciding = life.task(self.roles.run(), "store-role")
        service = StoreService(
            repository,
            self.hub,
            self.nc,
            js,
            buckets[subjects.KV_CANCELLED],
            self.purger,
            payloads,
            self.settings.max_response_bytes,
        )
        tasks_pb2_grpc.add_TaskServiceServicer_to_server(service, self.server.grpc)
        # By hand: the mux writes its responses as bytes (store.mux).
        mux = WatchMux(service, self.settings.max_message_bytes).handlers()
        self.server.grpc.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(WATCH_MUX_SERVICE, mux),)
        )
        self.server.grpc.add_registered_method_handlers(WATCH_MUX_SERVICE, mux)
        quotas_pb2_grpc.add_NamespaceCountServiceServicer_to_server(
            NamespaceCounts(repository), self.server.grpc
        )
        await self.server.follow_nats(self.nc)
        await self.server.start()
        life.server(self.server)
        log.info(
            "store listening on %s (database %s, %s)",
            self.address,
            _redact(self.settings.database_url),
            "the writer" if self.roles.writer else "a standby",
        )

    async def _writer_duties(self) -> list[asyncio.Task[None]]:
        """What only the writer runs: applying events (from the applied sequence), trimming
        EVENTS and retention. Made anew at each takeover (store.roles)."""
        applier = EventApplier(
            self.nc,
            self.js,
            self.repository,
            self.hub,
            self.settings.event_batch_size,
            EventScreen(self.settings.limits, self._refusals),
        )
        await applier.start()
        self.applier = applier
        policy = RetentionPolicy(self.settings.retention_seconds, self.settings.retention_by_type)

        async def apply() -> None:
            try:
                await applier.run()
            finally:
                await applier.stop()

        self._applying = asyncio.create_task(apply(), name="apply-events")
        return [
            self._applying,
            asyncio.create_task(self.trimmer.run(), name="trim-events"),
            asyncio.create_task(self.purger.run_retention(policy), name="retention"),
        ]

    async def stop(self, grace: float = 5.0) -> None:
        await self._life.stop(grace)
        log.info("store stopped")


def _holder_id() -> str:
    """This process's name in the writer lease: unique, readable in logs."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _redact(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{host}"
    return url


def listeners(settings: StoreSettings) -> list[Listener]:
    """Where the store listens: its TaskService only for the services, by mutual TLS."""
    tls = settings.common.tls
    return [
        Listener("STORE_LISTEN", settings.listen, tls_missing(tls, mutual=True)),
        Listener("METRICS_LISTEN", settings.metrics_listen, tls_missing(tls)),
    ]


def main() -> None:
    """``python -m store``: reads settings, sets up logging once and serves."""
    try:
        run_service("store", load_environ(), StoreSettings.from_env, Store, listeners)
    except SchemaNotCurrent as exc:
        log.error("cannot run: %s", exc)
        raise SystemExit(1) from exc


def migrate_main() -> None:
    """``python -m store migrate``: the schema to the newest revision, then exit; safe to
    repeat, and replicas or jobs running it together take turns (store.db.migrate)."""
    try:
        settings = StoreSettings.from_env(load_environ())
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from exc
    setup_logging("store-migrate", settings.common.log_level, settings.common.log_format)

    async def upgrade() -> None:
        engine = create_engine(settings.database_url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    run(upgrade)
    log.info("the schema of %s is current", _redact(settings.database_url))
