"""Settings of every service, read once from ``CONVEYOR_*`` variables at start-up.

Each service has one frozen dataclass with ``from_env(mapping)``. Every bad variable is
reported at once in a :class:`ConfigError`. Nothing below ``main()`` reads ``os.environ``:
``main()`` calls :func:`load_environ` and passes the mapping down.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from dotenv import dotenv_values

T = TypeVar("T")

PREFIX = "CONVEYOR_"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///.conveyor/conveyor.db"
DEFAULT_GATEWAY_ADDR = "127.0.0.1:50051"
DEFAULT_STORE_ADDR = "127.0.0.1:50052"
MIB = 1024 * 1024
GIB = 1024 * MIB
EMBEDDED_METRICS_LISTEN = "127.0.0.1:0"
"""``/metrics`` of services built in code (tests): any free loopback port. ``from_env``
defaults to a fixed port per service; CONVEYOR_METRICS_LISTEN=off serves none ("")."""


class ConfigError(ValueError):
    """Raised when one or more CONVEYOR_* variables are invalid; lists all of them."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))
        self.problems = problems


def load_environ(env_file: str | Path = ".env") -> dict[str, str]:
    """The process environment over the ``.env`` file of the working directory."""
    merged: dict[str, str] = {}
    path = Path(env_file)
    if path.is_file():
        merged.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    merged.update(os.environ)
    return merged


_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def age_seconds(text: str) -> float:
    """Seconds of an age such as 90s, 15m, 12h or 30d; a plain number is days."""
    number = text.strip().lower()
    unit = number[-1:] if number[-1:] in _AGE_UNITS else "d"
    try:
        value = float(number[:-1] if unit == number[-1:] else number)
    except ValueError:
        raise ValueError(f"expected an age such as 12h or 30d, got {text!r}") from None
    if not value >= 0:
        raise ValueError(f"an age must not be negative, got {text!r}")
    return value * _AGE_UNITS[unit]


class _Reader:
    """Reads typed values from a mapping, collecting every problem instead of stopping."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def _get(self, name: str, default: T, parse: Callable[[str], T], check: str = "") -> T:
        raw = self.env.get(PREFIX + name)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except ValueError as exc:
            self.problems.append(f"{PREFIX}{name}={raw!r}: {check or exc}")
            return default

    def text(self, name: str, default: str) -> str:
        return self._get(name, default, str)

    def integer(self, name: str, default: int, minimum: int = 0, maximum: int = 2**62) -> int:
        def parse(raw: str) -> int:
            value = int(raw)
            if not minimum <= value <= maximum:
                raise ValueError(f"must be between {minimum} and {maximum}")
            return value

        return self._get(name, default, parse)

    def number(self, name: str, default: float, minimum: float = 0.0) -> float:
        def parse(raw: str) -> float:
            value = float(raw)
            if not value >= minimum:
                raise ValueError(f"must be a number >= {minimum}")
            return value

        return self._get(name, default, parse)

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        def parse(raw: str) -> str:
            if raw.lower() not in choices:
                raise ValueError(f"must be one of {', '.join(choices)}")
            return raw.lower()

        return self._get(name, default, parse)

    def address(self, name: str, default: str) -> str:
        def parse(raw: str) -> str:
            host, sep, port = raw.rpartition(":")
            if not sep or not host or not port.isdigit() or int(port) > 65535:
                raise ValueError("must be host:port")
            return raw

        return self._get(name, default, parse)

    def listen_or_off(self, name: str, default: str) -> str:
        """host:port, or "" when the variable is ``off``."""
        if self.env.get(PREFIX + name, "").strip().lower() == "off":
            return ""
        return self.address(name, default)

    def ages(self, name: str) -> dict[str, float]:
        """``key=age,...`` as seconds by key; an age is a number of days or has a unit
        (s, m, h, d), and 0 means forever."""

        def parse(raw: str) -> dict[str, float]:
            ages: dict[str, float] = {}
            for item in raw.replace(",", " ").split():
                key, sep, value = item.partition("=")
                if not sep or not key:
                    raise ValueError(f"expected type=age, got {item!r}")
                ages[key] = age_seconds(value)
            return ages

        return self._get(name, {}, parse)

    def flag(self, name: str) -> bool:
        """1/true/yes/on or 0/false/no/off; unset is False."""

        def parse(raw: str) -> bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError("must be 1 or 0")

        return self._get(name, False, parse)

    def file(self, name: str) -> str:
        """A path to a readable file, or "" when unset."""

        def parse(raw: str) -> str:
            if not os.access(raw, os.R_OK) or not Path(raw).is_file():
                raise ValueError("no readable file there")
            return raw

        return self._get(name, "", parse)

    def numbers_by_key(self, name: str) -> dict[str, float]:
        """``key=number,...`` as numbers (>= 0) by key."""

        def parse(raw: str) -> dict[str, float]:
            values: dict[str, float] = {}
            for item in raw.replace(",", " ").split():
                key, sep, value = item.partition("=")
                if not sep or not key or not float(value) >= 0:
                    raise ValueError(f"expected name=number (>= 0), got {item!r}")
                values[key] = float(value)
            return values

        return self._get(name, {}, parse)

    def words(self, name: str) -> tuple[str, ...]:
        raw = self.env.get(PREFIX + name, "")
        return tuple(w for w in raw.replace(",", " ").split() if w)

    def done(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)


@dataclass(frozen=True)
class StreamLimits:
    """How much the streams may hold, so that a backlog is refused at submit long before
    JetStream's storage is full (docs/reliability.md, "When storage fills"). Every service
    declares EVENTS, so every service must be given the same ``events_max_bytes``. 0: no
    limit."""

    queue_max_tasks: int = 1_000_000
    """Tasks queued, delayed or running at most, all types together (in TASKS)."""
    queue_max_bytes: int = 1 * GIB
    """Bytes of the tasks in TASKS at most."""
    queue_max_tasks_per_type: int = 0
    """Tasks of one type queued or running at most, counted by the gateway."""
    events_max_bytes: int = 1 * GIB
    """Bytes the EVENTS stream may hold (its ``max_bytes``); submits are refused past
    three quarters of it, the rest is kept for outcomes."""
    events_keep_seconds: float = 24 * 3600.0
    """How long the store keeps events it has applied in EVENTS (to rebuild a lost
    database from), unless EVENTS is past half its ``events_max_bytes``."""

    @staticmethod
    def read(r: _Reader) -> StreamLimits:
        return StreamLimits(
            queue_max_tasks=r.integer("QUEUE_MAX_TASKS", 1_000_000),
            queue_max_bytes=r.integer("QUEUE_MAX_BYTES", 1 * GIB),
            queue_max_tasks_per_type=r.integer("QUEUE_MAX_TASKS_PER_TYPE", 0),
            events_max_bytes=r.integer("EVENTS_MAX_BYTES", 1 * GIB),
            events_keep_seconds=r.number("EVENTS_KEEP_SECONDS", 24 * 3600.0),
        )


DEFAULT_ALLOWED_PEERS = ("gateway.conveyor.internal", "scheduler.conveyor.internal")
"""The service identities (a DNS SAN or the CN of the client certificate) that may call
the store when it requires client certificates."""


@dataclass(frozen=True)
class TlsSettings:
    """TLS of a service's servers and of its calls to other services (conveyor.tls)."""

    cert: str = ""
    """CONVEYOR_TLS_CERT: the PEM certificate chain every server of the service presents,
    and its client certificate when it calls another service."""
    key: str = ""
    """CONVEYOR_TLS_KEY: the PEM private key of ``cert``."""
    client_ca: str = ""
    """CONVEYOR_TLS_CLIENT_CA: PEM CA certificates; when set, the gRPC server requires a
    client certificate they signed (mutual TLS)."""
    ca: str = ""
    """CONVEYOR_TLS_CA: PEM CA certificates that sign the services this one calls (the
    store); when set, those calls use TLS."""
    allowed_peers: tuple[str, ...] = DEFAULT_ALLOWED_PEERS
    """CONVEYOR_TLS_ALLOWED_PEERS: the client identities the store answers under mutual
    TLS; any other certificate of the CA gets PERMISSION_DENIED."""
    reload_seconds: float = 30.0
    """How often the channels to other services look for renewed files (conveyor.renewing);
    not read from the environment: tests shorten it."""

    @property
    def enabled(self) -> bool:
        """True when the servers serve TLS."""
        return bool(self.cert and self.key)

    @staticmethod
    def read(r: _Reader) -> TlsSettings:
        settings = TlsSettings(
            cert=r.file("TLS_CERT"),
            key=r.file("TLS_KEY"),
            client_ca=r.file("TLS_CLIENT_CA"),
            ca=r.file("TLS_CA"),
            allowed_peers=r.words("TLS_ALLOWED_PEERS") or DEFAULT_ALLOWED_PEERS,
        )
        if bool(r.env.get(PREFIX + "TLS_CERT")) != bool(r.env.get(PREFIX + "TLS_KEY")):
            r.problems.append(f"{PREFIX}TLS_CERT and {PREFIX}TLS_KEY must be set together")
        if r.env.get(PREFIX + "TLS_CLIENT_CA") and not r.env.get(PREFIX + "TLS_CERT"):
            r.problems.append(f"{PREFIX}TLS_CLIENT_CA needs {PREFIX}TLS_CERT and {PREFIX}TLS_KEY")
        return settings


@dataclass(frozen=True)
class CommonSettings:
    """Settings every service shares."""

    nats_url: str = DEFAULT_NATS_URL
    log_level: str = "info"
    log_format: str = "text"
    stream_replicas: int = 1
    nats_ping_interval_seconds: float = 15.0
    """How often the NATS connection is pinged; three unanswered pings mark it dead."""
    grpc_keepalive_seconds: float = 30.0
    """How often gRPC servers and channels ping an idle connection (conveyor.keepalive)."""
    stream_limits: StreamLimits = field(default_factory=StreamLimits)
    tls: TlsSettings = field(default_factory=TlsSettings)
    insecure: bool = False
    """CONVEYOR_INSECURE=1: listen on a non-loopback address without TLS (or without
    authentication) anyway, with a warning at start (conveyor.exposure)."""
    nats_user: str = ""
    """The NATS user (one per service role, conveyor.natsauth); its password is read from
    ``nats_password_file``, never from the environment or a command line."""
    nats_password_file: str = ""
    nats_creds: str = ""
    """A NATS ``.creds`` file (JWT and NKey seed), instead of a user and password."""
    nats_tls_ca: str = ""
    """CA certificate that verifies the NATS server; set, the connection uses TLS."""
    nats_tls_cert: str = ""
    nats_tls_key: str = ""
    """A client certificate and key for NATS servers that verify clients."""

    @property
    def nats_authenticated(self) -> bool:
        """Whether this service connects to NATS with credentials of its own role."""
        return bool(self.nats_user or self.nats_creds)

    @staticmethod
    def read(r: _Reader) -> CommonSettings:
        settings = CommonSettings(
            nats_user=r.text("NATS_USER", ""),
            nats_password_file=r.file("NATS_PASSWORD_FILE"),
            nats_creds=r.file("NATS_CREDS"),
            nats_tls_ca=r.file("NATS_TLS_CA"),
            nats_tls_cert=r.file("NATS_TLS_CERT"),
            nats_tls_key=r.file("NATS_TLS_KEY"),
            nats_url=r.text("NATS_URL", DEFAULT_NATS_URL),
            log_level=r.choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            log_format=r.choice("LOG_FORMAT", "text", ("text", "json")),
            stream_replicas=r.integer("STREAM_REPLICAS", 1, minimum=1, maximum=5),
            nats_ping_interval_seconds=r.number("NATS_PING_INTERVAL_SECONDS", 15.0, minimum=0.1),
            grpc_keepalive_seconds=r.number("GRPC_KEEPALIVE_SECONDS", 30.0, minimum=0.1),
            stream_limits=StreamLimits.read(r),
            tls=TlsSettings.read(r),
            insecure=r.flag("INSECURE"),
        )
        if settings.nats_user and not settings.nats_password_file:
            r.problems.append(
                f"{PREFIX}NATS_USER is set: {PREFIX}NATS_PASSWORD_FILE must name its password file"
            )
        if bool(settings.nats_tls_cert) != bool(settings.nats_tls_key):
            r.problems.append(f"{PREFIX}NATS_TLS_CERT and {PREFIX}NATS_TLS_KEY go together")
        return settings


@dataclass(frozen=True)
class Limits:
    """Input limits the gateway enforces."""

    max_text_bytes: int = 1 * MIB
    max_image_bytes: int = 10 * MIB
    max_batch_items: int = 100_000
    max_tasks_per_call: int = 1000
    max_message_bytes: int = 16 * MIB
    max_watches: int = 10_000

    @staticmethod
    def read(r: _Reader) -> Limits:
        return Limits(
            max_text_bytes=r.integer("MAX_TEXT_BYTES", 1 * MIB, minimum=1),
            max_image_bytes=r.integer("MAX_IMAGE_BYTES", 10 * MIB, minimum=1),
            max_batch_items=r.integer("MAX_BATCH_ITEMS", 100_000, minimum=1),
            max_tasks_per_call=r.integer("MAX_TASKS_PER_CALL", 1000, minimum=1),
            max_message_bytes=r.integer(
                "MAX_MESSAGE_BYTES", 16 * MIB, minimum=MIB, maximum=64 * MIB
            ),
            max_watches=r.integer("MAX_WATCHES", 10_000, minimum=1),
        )


AUTH_METHODS = ("keys", "jwt")
"""The authenticators CONVEYOR_AUTH may turn on."""
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


@dataclass(frozen=True)
class JwtSettings:
    """How the gateway validates OIDC/JWT bearer tokens (CONVEYOR_AUTH includes ``jwt``)."""

    issuer: str = ""
    """The ``iss`` every token must carry."""
    audience: str = ""
    """The ``aud`` every token must include."""
    jwks: str = ""
    """The issuer's signing keys: a JWKS file's path, or its https:// URL (http:// only
    on loopback)."""
    namespace_claim: str = "conveyor_namespace"
    """The claim naming the caller's namespace (absent: ``default``)."""
    role_claim: str = "conveyor_role"
    """The claim naming the caller's role: reader, submitter, operator or admin."""
    leeway_seconds: float = 30.0
    """Clock skew tolerated on ``exp`` and ``nbf``."""

    @staticmethod
    def read(r: _Reader, required: bool) -> JwtSettings:
        settings = JwtSettings(
            issuer=r.text("JWT_ISSUER", ""),
            audience=r.text("JWT_AUDIENCE", ""),
            jwks=r.text("JWKS", ""),
            namespace_claim=r.text("JWT_NAMESPACE_CLAIM", "conveyor_namespace"),
            role_claim=r.text("JWT_ROLE_CLAIM", "conveyor_role"),
            leeway_seconds=r.number("JWT_LEEWAY_SECONDS", 30.0),
        )
        if required:
            for name, value in (
                ("JWT_ISSUER", settings.issuer),
                ("JWT_AUDIENCE", settings.audience),
                ("JWKS", settings.jwks),
            ):
                if not value:
                    r.problems.append(f"{PREFIX}{name} must be set when CONVEYOR_AUTH has jwt")
        jwks = settings.jwks.lower()
        if jwks.startswith("http://") and not jwks[7:].startswith(LOOPBACK_HOSTS):
            r.problems.append(
                f"{PREFIX}JWKS={settings.jwks!r}: signing keys come over https:// "
                "(http:// only from a loopback address)"
            )
        return settings


@dataclass(frozen=True)
class AuthSettings:
    """Who may call the gateway (docs/security.md). Off by default: ``conveyor dev`` on
    loopback needs no credentials."""

    methods: tuple[str, ...] = ()
    """The authenticators on (CONVEYOR_AUTH: off, keys, jwt or keys,jwt); () is off."""
    admin_key_file: str = ""
    """A file holding an admin API key the gateway stores at start (a Kubernetes Secret,
    ``conveyor dev --secure``), so the first keys can be made."""
    jwt: JwtSettings = field(default_factory=JwtSettings)

    @property
    def enabled(self) -> bool:
        return bool(self.methods)

    @staticmethod
    def read(r: _Reader) -> AuthSettings:
        words = tuple(w.lower() for w in r.words("AUTH"))
        methods: tuple[str, ...] = ()
        if words != ("off",):
            unknown = [w for w in words if w not in AUTH_METHODS]
            if unknown:
                r.problems.append(
                    f"{PREFIX}AUTH={','.join(words)!r}: must be off, keys, jwt or keys,jwt"
                )
            methods = tuple(m for m in AUTH_METHODS if m in words)
        return AuthSettings(
            methods=methods,
            admin_key_file=r.text("ADMIN_KEY_FILE", ""),
            jwt=JwtSettings.read(r, required="jwt" in methods),
        )


PAYLOAD_INLINE_MAX = MIB
"""The largest CONVEYOR_PAYLOAD_INLINE_BYTES: a result or input past it is never inline."""


def _payload_inline_bytes(r: _Reader) -> int:
    return r.integer("PAYLOAD_INLINE_BYTES", 256 * 1024, minimum=1024, maximum=PAYLOAD_INLINE_MAX)


@dataclass(frozen=True)
class NamespaceQuotas:
    """What one namespace may have queued and submit, checked by the gateway at submit
    (conveyor.intake.quotas). 0: no limit. ``by_namespace`` overrides either for the
    namespaces it names."""

    max_queued: int = 0
    """Unfinished tasks (pending, scheduled, running, retrying) of a namespace at most."""
    submits_per_second: float = 0.0
    """Tasks a namespace may submit per second through one gateway (bursts of one
    second's worth)."""
    max_queued_by_namespace: Mapping[str, int] = field(default_factory=dict)
    submits_per_second_by_namespace: Mapping[str, float] = field(default_factory=dict)

    def queued_limit(self, namespace: str) -> int:
        return self.max_queued_by_namespace.get(namespace, self.max_queued)

    def rate_limit(self, namespace: str) -> float:
        return self.submits_per_second_by_namespace.get(namespace, self.submits_per_second)

    @staticmethod
    def read(r: _Reader) -> NamespaceQuotas:
        queued = r.numbers_by_key("NAMESPACE_MAX_QUEUED_BY_NAMESPACE")
        return NamespaceQuotas(
            max_queued=r.integer("NAMESPACE_MAX_QUEUED", 0),
            submits_per_second=r.number("NAMESPACE_SUBMITS_PER_SECOND", 0.0),
            max_queued_by_namespace={key: int(value) for key, value in queued.items()},
            submits_per_second_by_namespace=r.numbers_by_key(
                "NAMESPACE_SUBMITS_PER_SECOND_BY_NAMESPACE"
            ),
        )


@dataclass(frozen=True)
class GatewaySettings:
    """Settings of the gateway."""

    common: CommonSettings = field(default_factory=CommonSettings)
    listen: str = "127.0.0.1:50051"
    store_addr: str = DEFAULT_STORE_ADDR
    limits: Limits = field(default_factory=Limits)
    payload_inline_bytes: int = 256 * 1024
    """Inputs serialized to more bytes go to the payload object store (a claim check)."""
    metrics_listen: str = EMBEDDED_METRICS_LISTEN
    http_listen: str = ""
    """Where the HTTP/JSON door listens; "" is off. From the environment the default is
    127.0.0.1:8000; constructed in code (tests) it is off unless given."""
    http_max_body_bytes: int = 16 * MIB
    http_cors_origins: tuple[str, ...] = ()
    auth: AuthSettings = field(default_factory=AuthSettings)
    namespace_quotas: NamespaceQuotas = field(default_factory=NamespaceQuotas)

    @staticmethod
    def from_env(env: Mapping[str, str]) -> GatewaySettings:
        r = _Reader(env)
        settings = GatewaySettings(
            common=CommonSettings.read(r),
            listen=r.address("GATEWAY_LISTEN", "127.0.0.1:50051"),
            store_addr=r.address("STORE_ADDR", DEFAULT_STORE_ADDR),
            limits=Limits.read(r),
            payload_inline_bytes=_payload_inline_bytes(r),
            metrics_listen=r.listen_or_off("METRICS_LISTEN", "127.0.0.1:9091"),
            http_listen=r.listen_or_off("HTTP_LISTEN", "127.0.0.1:8000"),
            http_max_body_bytes=r.integer(
                "HTTP_MAX_BODY_BYTES", 16 * MIB, minimum=1024, maximum=256 * MIB
            ),
            http_cors_origins=r.words("HTTP_CORS_ORIGINS"),
            auth=AuthSettings.read(r),
            namespace_quotas=NamespaceQuotas.read(r),
        )
        r.done()
        return settings


MIGRATE_CHOICES = ("auto", "always", "never")


@dataclass(frozen=True)
class StoreSettings:
    """Settings of the store."""

    common: CommonSettings = field(default_factory=CommonSettings)
    listen: str = "127.0.0.1:50052"
    database_url: str = DEFAULT_DATABASE_URL
    event_batch_size: int = 500
    max_message_bytes: int = 16 * MIB
    max_response_bytes: int = 2 * MIB
    """The largest task, watch update or ListTasks page sent to a client: results that do
    not fit are abridged, with a reference to GetTaskPayload."""
    metrics_listen: str = EMBEDDED_METRICS_LISTEN
    retention_seconds: float = 7 * 86400.0
    """How long finished tasks are kept; 0 keeps them forever."""
    retention_by_type: dict[str, float] = field(default_factory=dict)
    """Seconds to keep finished tasks of a type, over ``retention_seconds``."""
    limits: Limits = field(default_factory=Limits)
    """The gateway's input limits (the same CONVEYOR_MAX_* variables), which the store
    holds every submitted task to (store.screen)."""
    lease_seconds: float = 8.0
    """The writer lease (store.lease): a standby takes over about this long after the
    writer stopped renewing it."""
    migrate: str = "auto"
    """Whether start-up migrates the schema: ``auto`` on SQLite only (PostgreSQL runs
    ``python -m store migrate`` as its own step), ``always`` or ``never``."""

    @staticmethod
    def from_env(env: Mapping[str, str]) -> StoreSettings:
        r = _Reader(env)
        settings = StoreSettings(
            common=CommonSettings.read(r),
            listen=r.address("STORE_LISTEN", "127.0.0.1:50052"),
            database_url=r.text("DATABASE_URL", DEFAULT_DATABASE_URL),
            event_batch_size=r.integer("STORE_EVENT_BATCH", 500, minimum=1, maximum=10_000),
            max_message_bytes=r.integer(
                "MAX_MESSAGE_BYTES", 16 * MIB, minimum=MIB, maximum=64 * MIB
            ),
            max_response_bytes=r.integer(
                "MAX_RESPONSE_BYTES", 2 * MIB, minimum=64 * 1024, maximum=64 * MIB
            ),
            metrics_listen=r.listen_or_off("METRICS_LISTEN", "127.0.0.1:9092"),
            retention_seconds=r.number("RETENTION_DAYS", 7.0) * 86400,
            retention_by_type=r.ages("RETENTION_BY_TYPE"),
            limits=Limits.read(r),
            lease_seconds=r.number("STORE_LEASE_SECONDS", 8.0, minimum=1.0),
            migrate=r.choice("STORE_MIGRATE", "auto", MIGRATE_CHOICES),
        )
        r.done()
        return settings


def default_worker_id() -> str:
    """host-pid: unique per process, readable in logs."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class WorkerSettings:
    """Settings of a worker."""

    common: CommonSettings = field(default_factory=CommonSettings)
    listen: str = "127.0.0.1:50054"
    types: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()
    concurrency: int = 8
    process_pool_size: int = 2
    worker_id: str = field(default_factory=default_worker_id)
    ack_wait_seconds: float = 30.0
    shutdown_grace_seconds: float = 30.0
    start_event_delay_seconds: float = 0.05
    progress_interval_seconds: float = 0.25
    """The least time between two progress events of a task; the latest value waits."""
    nice: int = 0
    """CPU priority (Unix niceness) the worker runs at, at least: above 0, the services
    that answer clients win the CPU over handlers on a shared machine."""
    payload_inline_bytes: int = 256 * 1024
    """Results serialized to more bytes go to the payload object store (a claim check)."""
    max_result_bytes: int = 64 * MIB
    """Results serialized to more bytes fail their task, without further attempts."""
    metrics_listen: str = EMBEDDED_METRICS_LISTEN

    @staticmethod
    def from_env(env: Mapping[str, str]) -> WorkerSettings:
        r = _Reader(env)
        settings = WorkerSettings(
            common=CommonSettings.read(r),
            listen=r.address("WORKER_LISTEN", "127.0.0.1:50054"),
            types=r.words("WORKER_TYPES"),
            imports=r.words("WORKER_IMPORTS"),
            concurrency=r.integer("WORKER_CONCURRENCY", 8, minimum=1, maximum=10_000),
            process_pool_size=r.integer("WORKER_PROCESSES", 2, minimum=1, maximum=256),
            worker_id=r.text("WORKER_ID", default_worker_id()),
            ack_wait_seconds=r.number("ACK_WAIT_SECONDS", 30.0, minimum=1.0),
            shutdown_grace_seconds=r.number("SHUTDOWN_GRACE_SECONDS", 30.0),
            start_event_delay_seconds=r.number("START_EVENT_DELAY_SECONDS", 0.05),
            progress_interval_seconds=r.number("PROGRESS_INTERVAL_SECONDS", 0.25),
            nice=r.integer("WORKER_NICE", 0, minimum=0, maximum=19),
            payload_inline_bytes=_payload_inline_bytes(r),
            max_result_bytes=r.integer("MAX_RESULT_BYTES", 64 * MIB, minimum=1024),
            metrics_listen=r.listen_or_off("METRICS_LISTEN", "127.0.0.1:9094"),
        )
        r.done()
        return settings


@dataclass(frozen=True)
class SchedulerSettings:
    """Settings of the scheduler."""

    common: CommonSettings = field(default_factory=CommonSettings)
    listen: str = "127.0.0.1:50053"
    store_addr: str = DEFAULT_STORE_ADDR
    metrics_listen: str = EMBEDDED_METRICS_LISTEN

    @staticmethod
    def from_env(env: Mapping[str, str]) -> SchedulerSettings:
        r = _Reader(env)
        settings = SchedulerSettings(
            common=CommonSettings.read(r),
            listen=r.address("SCHEDULER_LISTEN", "127.0.0.1:50053"),
            store_addr=r.address("STORE_ADDR", DEFAULT_STORE_ADDR),
            metrics_listen=r.listen_or_off("METRICS_LISTEN", "127.0.0.1:9093"),
        )
        r.done()
        return settings


@dataclass(frozen=True)
class ClientSettings:
    """Settings of the CLI and SDK."""

    gateway_addr: str = DEFAULT_GATEWAY_ADDR
    tls_ca: str = ""
    """CONVEYOR_TLS_CA: PEM CA certificates to verify the gateway with; TLS when set."""
    tls: bool = False
    """CONVEYOR_TLS=1: TLS verified against the system's trusted roots."""
    tls_client_cert: str = ""
    """CONVEYOR_TLS_CLIENT_CERT: a PEM client certificate, for a gateway that asks."""
    tls_client_key: str = ""
    """CONVEYOR_TLS_CLIENT_KEY: the private key of ``tls_client_cert``."""
    api_key: str = ""
    """The API key sent with every call (CONVEYOR_API_KEY; "" sends none)."""
    namespace: str = ""
    """The namespace every call asks for (CONVEYOR_NAMESPACE; "" leaves it to the key)."""

    @staticmethod
    def from_env(env: Mapping[str, str]) -> ClientSettings:
        r = _Reader(env)
        settings = ClientSettings(
            gateway_addr=r.address("GATEWAY_ADDR", DEFAULT_GATEWAY_ADDR),
            tls_ca=r.file("TLS_CA"),
            tls=r.flag("TLS"),
            tls_client_cert=r.file("TLS_CLIENT_CERT"),
            tls_client_key=r.file("TLS_CLIENT_KEY"),
            api_key=r.text("API_KEY", ""),
            namespace=r.text("NAMESPACE", ""),
        )
        if bool(settings.tls_client_cert) != bool(settings.tls_client_key):
            r.problems.append(
                f"{PREFIX}TLS_CLIENT_CERT and {PREFIX}TLS_CLIENT_KEY must be set together"
            )
        r.done()
        return settings

    def __repr__(self) -> str:
        shown = "<set>" if self.api_key else ""
        return (
            f"ClientSettings(gateway_addr={self.gateway_addr!r}, api_key={shown!r}, "
            f"namespace={self.namespace!r})"
        )
