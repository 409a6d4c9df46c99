"""The gateway process: ``python -m gateway``."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import grpc
from nats.aio.client import Client as NATS

from conveyor import jetstream, subjects, transcode
from conveyor.api.auth.v1 import auth_pb2, auth_pb2_grpc
from conveyor.api.queues.v1 import queues_pb2, queues_pb2_grpc
from conveyor.api.schedules.v1 import schedules_pb2, schedules_pb2_grpc
from conveyor.api.store.v1 import quotas_pb2_grpc
from conveyor.api.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from conveyor.auth.authenticate import Authenticator
from conveyor.auth.keyring import KeyRing
from conveyor.auth.keys import ApiKey, parse_key
from conveyor.auth.principal import DEFAULT_NAMESPACE, Role
from conveyor.auth.tokens import JwtVerifier
from conveyor.config import AuthSettings, GatewaySettings, load_environ
from conveyor.errors import Unavailable
from conveyor.exposure import AUTH, Listener, is_loopback, tls_missing
from conveyor.intake.admission import Admission
from conveyor.intake.catalog import TypeCatalog
from conveyor.intake.quotas import Quotas, unfinished_counter
from conveyor.intake.submit import Submitter, task_finder
from conveyor.lifecycle import Lifecycle
from conveyor.messages import PUBLISH_TIMEOUT
from conveyor.metrics import PROBE_INTERVAL, GatewayMetrics, every
from conveyor.payloads import PayloadStore
from conveyor.publish import AckedPublisher
from conveyor.renewing import service_channel
from conveyor.schedules import ScheduleBook
from conveyor.server import PENDING_CALLS, Server, channel_options, run_service
from conveyor.tls import CertificateFiles
from gateway.calls import method_calls
from gateway.feeds import TaskFeeds
from gateway.http import Door, HttpOptions, HttpServer
from gateway.keys import AuthService
from gateway.queues import QueueService
from gateway.schedules import ScheduleService
from gateway.service import GatewayService, add_task_service
from gateway.sse import TaskStreams
from gateway.watch import StoreWatches

log = logging.getLogger(__name__)

SERVICE_NAME = tasks_pb2.DESCRIPTOR.services_by_name["TaskService"].full_name
SCHEDULE_SERVICE = schedules_pb2.DESCRIPTOR.services_by_name["ScheduleService"].full_name
QUEUE_SERVICE = queues_pb2.DESCRIPTOR.services_by_name["QueueService"].full_name
AUTH_SERVICE = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
SERVICE_NAMES = (SERVICE_NAME, SCHEDULE_SERVICE, QUEUE_SERVICE, AUTH_SERVICE)
"""Every Conveyor service the gateway serves (besides health and reflection)."""
ADMIN_KEY_WAIT = 30.0
"""Seconds the start keeps trying to store the admin key while NATS does not answer."""


def read_admin_key(path: str) -> ApiKey:
    """The API key in the file CONVEYOR_ADMIN_KEY_FILE names."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise OSError(f"CONVEYOR_ADMIN_KEY_FILE={path}: {exc.strerror or exc}") from None
    key = parse_key(text)
    if key is None:
        raise OSError(f"CONVEYOR_ADMIN_KEY_FILE={path} does not hold an API key (cvk_...)")
    return key


class Gateway:
    """A running gateway; ``start()`` then ``stop()``. Tests use port 0."""

    # Made by start(), which needs NATS.
    nc: NATS
    catalog: TypeCatalog
    channel: grpc.aio.Channel
    server: Server
    http: HttpServer
    keyring: KeyRing
    authenticator: Authenticator

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.metrics = GatewayMetrics()
        self._life = Lifecycle()
        self._stopping = False

    @property
    def address(self) -> str:
        return self.server.address

    async def start(self) -> None:
        common = self.settings.common
        life = self._life
        tls = common.tls
        await self.metrics.serve(self.settings.metrics_listen, tls)
        life.on_stop(self.metrics.close)
        role = subjects.GATEWAY
        self.nc, js = await jetstream.setup(common, "conveyor-gateway", self.metrics, role)
        life.on_stop(jetstream.close, self.nc)
        create = jetstream.declares(common, role)
        buckets = await jetstream.ensure_buckets(js, common, create)
        max_bytes = self.settings.limits.max_message_bytes
        # No client interceptors: relayed calls carry the trace context as metadata
        # (gateway.relay), at a fraction of an intercepted call's cost.
        self.channel = service_channel(
            self.settings.store_addr,
            tls,
            channel_options(max_bytes, common.grpc_keepalive_seconds),
        )
        life.on_stop(self.channel.close)
        self.catalog = TypeCatalog(buckets[subjects.KV_TYPES])
        await self.catalog.start()
        life.on_stop(self.catalog.stop)
        store = tasks_pb2_grpc.TaskServiceStub(self.channel)

        admission = Admission(js, common.stream_limits, self.metrics)
        quotas = Quotas(
            self.settings.namespace_quotas,
            unfinished_counter(quotas_pb2_grpc.NamespaceCountServiceStub(self.channel)),
            self.metrics,
        )
        life.task(every(PROBE_INTERVAL, admission.poll, "the queue's limits"), "queue-limits")
        submitter = Submitter(
            js,
            self.catalog,
            buckets[subjects.KV_IDEMPOTENCY],
            task_finder(store),
            AckedPublisher(self.nc, PUBLISH_TIMEOUT),
            PayloadStore(await jetstream.object_store(js, common, create)),
            self.settings.payload_inline_bytes,
            admission,
            quotas,
        )
        self.keyring = KeyRing(buckets[subjects.KV_KEYS])
        await self.keyring.start()
        life.on_stop(self.keyring.stop)
        self.authenticator = await self._authenticator(self.settings.auth)
        self.server = Server(
            self.settings.listen,
            SERVICE_NAMES,
            max_bytes,
            self.metrics,
            keepalive_seconds=common.grpc_keepalive_seconds,
            # Room for every watch allowed arriving at once, besides the usual backlog.
            pending_calls=PENDING_CALLS + self.settings.limits.max_watches,
            tls=tls,
            authenticator=self.authenticator,
        )
        tasks = GatewayService(submitter, self.settings.limits, self.metrics)
        servicers: dict[str, object] = {
            SERVICE_NAME: tasks,
            SCHEDULE_SERVICE: ScheduleService(
                ScheduleBook(buckets[subjects.KV_SCHEDULES]),
                submitter,
                self.catalog,
                self.settings.limits,
            ),
            QUEUE_SERVICE: QueueService(js, buckets[subjects.KV_QUEUES], self.catalog),
            AUTH_SERVICE: AuthService(self.keyring),
        }
        limits = self.settings.limits
        watches = StoreWatches(self.channel, limits.max_message_bytes, limits.max_watches)
        feeds = TaskFeeds(self.channel, watches)
        add_task_service(self.server.grpc, tasks, self.channel, watches, feeds)
        schedules_pb2_grpc.add_ScheduleServiceServicer_to_server(
            servicers[SCHEDULE_SERVICE], self.server.grpc
        )
        queues_pb2_grpc.add_QueueServiceServicer_to_server(
            servicers[QUEUE_SERVICE], self.server.grpc
        )
        auth_pb2_grpc.add_AuthServiceServicer_to_server(servicers[AUTH_SERVICE], self.server.grpc)
        await self.server.follow_nats(self.nc)
        await self.server.start()
        life.server(self.server)
        log.info("gateway listening on %s (store %s)", self.address, self.settings.store_addr)
        if self.settings.http_listen:
            await self._serve_http(servicers, watches, feeds)

    async def _authenticator(self, settings: AuthSettings) -> Authenticator:
        """The authenticators CONVEYOR_AUTH turns on; the admin key of
        CONVEYOR_ADMIN_KEY_FILE stored first, so a new deployment can make keys."""
        if settings.admin_key_file:
            await self._store_admin_key(read_admin_key(settings.admin_key_file))
        verifier = None
        if "jwt" in settings.methods:
            verifier = JwtVerifier(settings.jwt)
            await verifier.start()
        if settings.enabled:
            log.info("clients authenticate with: %s", ", ".join(settings.methods))
        else:
            # Off loopback only with CONVEYOR_INSECURE=1 (conveyor.exposure): worth a warning.
            doors = [d for d in listeners(self.settings) if d.setting != "METRICS_LISTEN"]
            exposed = any(d.address and not is_loopback(d.address) for d in doors)
            log.log(
                logging.WARNING if exposed else logging.INFO,
                "authentication is off (CONVEYOR_AUTH): every caller%s is an admin",
                "" if exposed else " on this machine",
            )
        return Authenticator(self.keyring if "keys" in settings.methods else None, verifier)

    async def _store_admin_key(self, key: ApiKey) -> None:
        """Stores the admin key, retrying while NATS does not answer, for ADMIN_KEY_WAIT
        at most: then the start fails saying why rather than waiting on."""
        description = "admin key of CONVEYOR_ADMIN_KEY_FILE"
        deadline = time.monotonic() + ADMIN_KEY_WAIT
        while True:
            try:
                added = await self.keyring.ensure(key, Role.ADMIN, DEFAULT_NAMESPACE, description)
                break
            except Unavailable as exc:
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"could not store the admin key of CONVEYOR_ADMIN_KEY_FILE in "
                        f"{ADMIN_KEY_WAIT:.0f} s: {exc.message}"
                    ) from exc
                log.warning("storing the admin key failed (%s); trying again", exc.message)
                await jetstream.backoff(self.nc, 1.0)
        if added:
            log.info("stored the admin API key %s of CONVEYOR_ADMIN_KEY_FILE", key.key_id)

    async def _serve_http(
        self, servicers: dict[str, object], watches: StoreWatches, feeds: TaskFeeds
    ) -> None:
        services = transcode.public_services()
        unary = [m for s in services for m in s.methods if not m.server_streaming]
        door = Door(
            services,
            method_calls(unary, servicers, self.channel),
            HttpOptions(self.settings.http_max_body_bytes, self.settings.http_cors_origins),
            ready=lambda: self.nc.is_connected and not self._stopping,
            streams=TaskStreams(watches, feeds),
            authenticator=self.authenticator,
        )
        tls = self.settings.common.tls
        files = CertificateFiles.of(tls)
        self.http = HttpServer(door.app(), self.settings.http_listen, files)
        await self.http.start()
        self._life.server(self.http)
        scheme = "https" if files else "http"
        log.info("gateway serving HTTP/JSON on %s://%s", scheme, self.http.address)

    async def stop(self, grace: float = 5.0) -> None:
        self._stopping = True
        await self._life.stop(grace)
        log.info("gateway stopped")


def listeners(settings: GatewaySettings) -> list[Listener]:
    """Where the gateway listens: its gRPC and HTTP doors need TLS and authenticated
    callers, its metrics TLS."""
    tls = settings.common.tls
    public = tls_missing(tls) + ((AUTH,) if not settings.auth.enabled else ())
    return [
        Listener("GATEWAY_LISTEN", settings.listen, public),
        Listener("HTTP_LISTEN", settings.http_listen, public),
        Listener("METRICS_LISTEN", settings.metrics_listen, tls_missing(tls)),
    ]


def main() -> None:
    """``python -m gateway``: reads settings, sets up logging once and serves."""
    run_service("gateway", load_environ(), GatewaySettings.from_env, Gateway, listeners)
