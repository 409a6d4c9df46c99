"""gRPC server plumbing shared by every service: health, reflection, errors, signals."""

from __future__ import annotations

import asyncio
import faulthandler
import functools
import gc
import inspect
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping
from typing import Any, Protocol, TypeVar

import grpc
import nats.errors
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from nats.aio.client import Client as NATS

from conveyor import jetstream, keepalive, reflection, tracing
from conveyor.auth.authenticate import Authenticator
from conveyor.auth.interceptor import AuthInterceptor
from conveyor.config import CommonSettings, ConfigError, TlsSettings
from conveyor.errors import ConveyorError, InvalidArgument, ResourceExhausted, Unimplemented
from conveyor.exposure import Listener, refuse_insecure
from conveyor.interceptors import CachingInterceptor
from conveyor.logs import setup_logging
from conveyor.metrics import MetricsInterceptor, ServiceMetrics
from conveyor.peers import PeerInterceptor
from conveyor.tls import CertificateFiles

log = logging.getLogger(__name__)


MAX_STATUS_MESSAGE_BYTES = 512
MAX_FIELD_VIOLATION_BYTES = 256
MAX_DETAILS_BYTES = 2560
"""A status travels in HTTP/2 trailers, which gRPC clients cap at 8 KiB by default, with
the message percent-encoded and the details base64-encoded: a bigger one would reach the
client as RESOURCE_EXHAUSTED instead of the error. These bounds keep it under 6 KiB."""


def _clip(text: str, limit: int) -> str:
    """At most ``limit`` bytes of UTF-8, cut on a character boundary."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", "ignore") + "..."


def status_for(error: ConveyorError) -> status_pb2.Status:
    """The rich status of an error, with BadRequest details for invalid arguments (as many
    violations as fit in the size a client accepts; the first ones)."""
    status = status_pb2.Status(
        code=error.code.value[0], message=_clip(error.message, MAX_STATUS_MESSAGE_BYTES)
    )
    if isinstance(error, InvalidArgument) and error.violations:
        bad_request = error_details_pb2.BadRequest()
        for v in error.violations:
            bad_request.field_violations.add(
                field=_clip(v.field, MAX_FIELD_VIOLATION_BYTES),
                description=_clip(v.description, MAX_FIELD_VIOLATION_BYTES),
            )
            if len(bad_request.field_violations) > 1 and bad_request.ByteSize() > MAX_DETAILS_BYTES:
                del bad_request.field_violations[-1]
                break
        detail = any_pb2.Any()
        detail.Pack(bad_request)
        status.details.append(detail)
    if isinstance(error, ResourceExhausted) and error.limit:
        quota = error_details_pb2.QuotaFailure()
        quota.violations.add(subject=error.limit, description=status.message)
        detail = any_pb2.Any()
        detail.Pack(quota)
        status.details.append(detail)
    return status


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], error: ConveyorError) -> None:
    """Ends the call with the error's status and details."""
    await context.abort_with_status(rpc_status.to_status(status_for(error)))


def unimplemented(method: str) -> ConveyorError:
    """The error for a method whose servicer keeps the generated base's body, which raises
    NotImplementedError: a caller at the wrong port, not a bug to log a traceback for."""
    return Unimplemented(f"{method} is not served here")


def internal_error(context_method: str, exc: BaseException) -> ConveyorError:
    log.exception("unhandled error in %s", context_method, exc_info=exc)
    error = ConveyorError(f"internal error: {type(exc).__name__}")
    error.code = grpc.StatusCode.INTERNAL
    return error


class _Undecodable:
    """What a request deserializer returns for bytes that are not the request message."""

    def __init__(self, problem: str) -> None:
        self.error = InvalidArgument(f"the request is not a valid message: {problem}")


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """The deserializer, returning _Undecodable where it would raise: grpc would answer
    UNKNOWN and log a traceback for every such request, where the client deserves an
    INVALID_ARGUMENT."""
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:
            return _Undecodable(str(exc))

    return parse


def _wrap_unary(inner: Any, method: str) -> Any:
    async def unary_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            if isinstance(request, _Undecodable):
                raise request.error
            return await inner(request, context)
        except ConveyorError as exc:
            await abort_with(context, exc)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except NotImplementedError:
            await abort_with(context, unimplemented(method))
        except Exception as exc:
            await abort_with(context, internal_error(method, exc))

    return unary_unary


def _wrap_stream(inner: Any, method: str) -> Any:
    async def unary_stream(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        try:
            if isinstance(request, _Undecodable):
                raise request.error
            result = inner(request, context)
            if hasattr(result, "__aiter__"):
                async for item in result:
                    yield item
            else:
                await result  # a handler that streams with context.write (health Watch)
        except ConveyorError as exc:
            await abort_with(context, exc)
        except (asyncio.CancelledError, grpc.aio.AbortError, GeneratorExit):
            raise
        except NotImplementedError:
            await abort_with(context, unimplemented(method))
        except Exception as exc:
            await abort_with(context, internal_error(method, exc))

    return unary_stream


class ErrorInterceptor(CachingInterceptor):
    """Maps ConveyorError to its status; logs anything else once and answers INTERNAL."""

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if handler.unary_unary is None and handler.unary_stream is None:
            return handler  # client streaming (reflection): left as it is
        handler = handler._replace(request_deserializer=_tolerant(handler.request_deserializer))
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=_wrap_unary(handler.unary_unary, method))
        if handler.unary_stream is not None:
            # A streaming handler that writes with context.write (Health.Watch) is a
            # coroutine, not an async generator: it is wrapped like a unary one.
            wrap = _wrap_stream if inspect.isasyncgenfunction(handler.unary_stream) else _wrap_unary
            return handler._replace(unary_stream=wrap(handler.unary_stream, method))
        return handler


PENDING_CALLS = 10_000
"""Calls a server holds while its event loop has not taken them yet: a burst of calls (a
few thousand watches opened at once) waits instead of being cancelled with no reason
given, as gRPC's default (1,000, then dropping at random up to 3,000) does; past this
limit gRPC still cancels them."""


def server_options(
    max_message_bytes: int,
    keepalive_seconds: float = keepalive.DEFAULT_INTERVAL_SECONDS,
    pending_calls: int = PENDING_CALLS,
) -> list[tuple[str, Any]]:
    """Channel options of every Conveyor server."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
        # The same soft and hard limit: no call is dropped before the backlog is full.
        ("grpc.server.max_pending_requests", pending_calls),
        ("grpc.server.max_pending_requests_hard_limit", pending_calls),
        *keepalive.server_options(keepalive_seconds),
    ]


def channel_options(
    max_message_bytes: int, keepalive_seconds: float = keepalive.DEFAULT_INTERVAL_SECONDS
) -> list[tuple[str, Any]]:
    """Options of the channels between services (gateway and scheduler to the store)."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2_000),
        *keepalive.channel_options(keepalive_seconds),
    ]


def server_interceptors(
    metrics: ServiceMetrics | None = None,
    peers: Collection[str] | None = None,
    inner: Iterable[grpc.aio.ServerInterceptor] = (),
    authenticator: Authenticator | None = None,
) -> list[grpc.aio.ServerInterceptor]:
    """The interceptors of a Conveyor server, outermost first: tracing (the call's span
    covers everything, and the caller's trace context is current inside the handlers),
    then metrics (it sees the status the error interceptor chose), then errors. The rest
    run inside the error interceptor, so what they raise is answered as any handler's
    error and counted by the metrics: the peer check (the store's callers, with
    ``peers``), ``inner`` ones, and innermost the authenticator (the gateway's), binding
    each call's principal."""
    interceptors: list[grpc.aio.ServerInterceptor] = tracing.server_interceptors()
    if metrics is not None:
        interceptors.append(MetricsInterceptor(metrics))
    interceptors.append(ErrorInterceptor())
    if peers is not None:
        interceptors.append(PeerInterceptor(peers))
    interceptors.extend(inner)
    if authenticator is not None:
        interceptors.append(AuthInterceptor(authenticator))
    return interceptors


LIVENESS_SERVICE = "liveness"
"""The health service name for liveness probes: NOT_SERVING only when the service is
stopping or stuck, not while NATS is away (restarting every service would not bring it
back); "" and the service names are NOT_SERVING then too, for readiness probes."""


def _status(serving: bool) -> health_pb2.HealthCheckResponse.ServingStatus.ValueType:
    if serving:
        return health_pb2.HealthCheckResponse.SERVING
    return health_pb2.HealthCheckResponse.NOT_SERVING


class Server:
    """A grpc.aio server with health and reflection, bound to ``listen`` (port 0 picks one).

    With ``tls`` serving TLS (its certificate files reloaded when they change), it
    requires client certificates of ``tls.client_ca`` when that is set; ``peers`` then
    names the client identities allowed to call anything but health (conveyor.peers).
    With an ``authenticator``, every call is checked against conveyor.auth.roles (a method
    not in it is refused) and runs with its principal bound; without one (the store, the
    scheduler, workers) calls are not checked here.
    """

    def __init__(
        self,
        listen: str,
        service_names: Iterable[str],
        max_message_bytes: int,
        metrics: ServiceMetrics | None = None,
        keepalive_seconds: float = keepalive.DEFAULT_INTERVAL_SECONDS,
        pending_calls: int = PENDING_CALLS,
        tls: TlsSettings | None = None,
        peers: Collection[str] | None = None,
        inner: Iterable[grpc.aio.ServerInterceptor] = (),
        authenticator: Authenticator | None = None,
    ) -> None:
        files = CertificateFiles.of(tls) if tls is not None else None
        checks_peers = files is not None and bool(files.client_ca) and peers is not None
        self.grpc = grpc.aio.server(
            interceptors=server_interceptors(
                metrics, peers if checks_peers else None, inner, authenticator
            ),
            options=server_options(max_message_bytes, keepalive_seconds, pending_calls),
        )
        self.metrics = metrics
        if metrics is not None:
            metrics.endpoint.health = self.serving
        self.health = health.aio.HealthServicer()
        self._working: bool | None = None  # None until started
        self._away: set[str] = set()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        self.service_names = list(service_names)
        reflection.enable([*self.service_names, health.SERVICE_NAME], self.grpc)
        try:
            if files is None:
                self.port = self.grpc.add_insecure_port(listen)
            else:
                self.port = self.grpc.add_secure_port(listen, files.server_credentials())
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {listen}: the address is in use or invalid") from exc
        host = listen.rpartition(":")[0]
        self.address = f"{'127.0.0.1' if host in ('0.0.0.0', '[::]', '') else host}:{self.port}"

    async def start(self) -> None:
        await self.grpc.start()
        await self.set_serving(True)

    async def set_serving(self, serving: bool) -> None:
        """SERVING (while no dependency is away) or NOT_SERVING, on every name, liveness
        included: the service itself is working, or stopping or stuck."""
        self._working = serving
        await self._report()

    async def set_dependency(self, name: str, available: bool) -> None:
        """Records whether a dependency (NATS) is reachable: while one is not, the service
        is NOT_SERVING but alive (LIVENESS_SERVICE stays SERVING)."""
        if available:
            self._away.discard(name)
        else:
            self._away.add(name)
        if self._working is not None:
            await self._report()

    async def follow_nats(self, nc: NATS) -> None:
        """Reports the service NOT_SERVING while ``nc`` has lost its connection."""
        await jetstream.on_connection_change(nc, functools.partial(self.set_dependency, "nats"))

    def serving(self) -> tuple[bool, bool]:
        """(alive, ready): what LIVENESS_SERVICE and "" report."""
        return bool(self._working), bool(self._working) and not self._away

    async def _report(self) -> None:
        ready = bool(self._working) and not self._away
        for name in ["", *self.service_names]:
            await self.health.set(name, _status(ready))
        await self.health.set(LIVENESS_SERVICE, _status(bool(self._working)))

    async def stop(self, grace: float) -> None:
        await self.set_serving(False)
        await self.grpc.stop(grace)


def stop_on_signals(stop: asyncio.Event) -> None:
    """Sets ``stop`` on SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


class Service(Protocol):
    """A service process's body: the Gateway, Store, Worker or Scheduler class."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class ServiceSettings(Protocol):
    """Any service's settings: they all carry the common ones."""

    @property
    def common(self) -> CommonSettings: ...


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


def run_service(
    name: str,
    env: Mapping[str, str],
    read_settings: Callable[[Mapping[str, str]], SettingsT],
    make: Callable[[SettingsT], Service],
    listeners: Callable[[SettingsT], Iterable[Listener]],
) -> None:
    """What every service's ``main()`` does: read settings once (exit 2 listing every bad
    variable, or every address ``listeners`` names that would be served insecurely: see
    conveyor.exposure), set up logging and tracing, then start the service and stop it
    gracefully on SIGTERM or SIGINT. A crash in native code (gRPC, protobuf, uvloop) prints
    every thread's Python stack to stderr first, so its log says where it happened."""
    faulthandler.enable()
    try:
        settings = read_settings(env)
        warnings = refuse_insecure(listeners(settings), settings.common.insecure)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from exc
    setup_logging(name, settings.common.log_level, settings.common.log_format)
    for warning in warnings:
        log.warning("CONVEYOR_INSECURE=1, serving anyway: %s", warning)
    tracing.setup_tracing(name, env)

    async def serve() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        service = make(settings)
        await service.start()
        settle_garbage_collector()
        await stop.wait()
        await service.stop()

    run(serve)


GC_YOUNG_THRESHOLD = 20_000
"""Allocations between collections of the youngest generation (CPython's default: 700)."""


def settle_garbage_collector() -> None:
    """Freezes what start-up made and collects the young generations less often.

    A service's start-up leaves many long-lived objects (modules, protobuf descriptors,
    gRPC, NATS and SQLAlchemy state) that every full collection would scan again, and the
    default young threshold runs a collection every 700 allocations, several per request.
    Frozen objects are never scanned, and most garbage here is freed by reference counting
    anyway. Only in ``python -m <service>`` (run_service): a test process starts many
    services and must collect them.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def run(main: Callable[[], Awaitable[None]]) -> None:
    """Runs a service's coroutine on uvloop; a failure to start is one clear line, exit 1."""
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        runner = asyncio.run
    try:
        runner(main())
    except (OSError, TimeoutError, nats.errors.NoServersError) as exc:
        log.error("cannot run: %s", exc)
        raise SystemExit(1) from exc
