"""Connecting to NATS and declaring Conveyor's streams and buckets, in one place."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from conveyor import natsauth, subjects
from conveyor.config import MIB, CommonSettings

if TYPE_CHECKING:  # for the annotation only: the metrics package never imports this module
    from conveyor.metrics import ServiceMetrics

T = TypeVar("T")

CANCELLED_TTL = 7 * 24 * 3600.0
"""How long a cancel marker lives in the conveyor_cancelled bucket."""

log = logging.getLogger(__name__)

EVENTS_MAX_AGE_SECONDS = 7 * 24 * 3600.0
DUPLICATE_WINDOW_SECONDS = 120.0
MAX_MSG_BYTES = 32 * MIB


INSUFFICIENT_STORAGE = 10047
"""JetStream's answer when the streams' ``max_bytes`` together exceed its storage."""


class StorageTooSmall(RuntimeError):
    """Raised when JetStream cannot reserve a stream's size (CONVEYOR_EVENTS_MAX_BYTES) in
    its storage."""

    def __init__(self, stream: str, exc: nats.js.errors.APIError) -> None:
        super().__init__(
            f"JetStream cannot reserve the size of the {stream} stream ({exc.description}): "
            "CONVEYOR_EVENTS_MAX_BYTES must fit in the server's JetStream file storage "
            "(max_file_store), with room left for CONVEYOR_QUEUE_MAX_BYTES and the buckets"
        )


PING_MAX_OUTSTANDING = 2
"""Pings left unanswered before the connection counts as dead: a server that stopped
answering (frozen, or behind a dropped network path) is noticed within three intervals."""

AfterReconnect = Callable[[JetStreamContext], Awaitable[None]]
ConnectionHook = Callable[[bool], Awaitable[None]]
_on_connection: weakref.WeakKeyDictionary[NATS, list[ConnectionHook]] = weakref.WeakKeyDictionary()
_after_reconnect: weakref.WeakKeyDictionary[NATS, list[AfterReconnect]] = (
    weakref.WeakKeyDictionary()
)
_redeclaring: set[asyncio.Task[None]] = set()
_backing_off: weakref.WeakKeyDictionary[NATS, set[asyncio.Event]] = weakref.WeakKeyDictionary()
REDECLARE_ATTEMPTS = 8
"""Tries (backing off from 0.5 s) to declare again after a reconnect; a server that has
just started may take a few seconds to answer JetStream requests."""


def after_reconnect(nc: NATS, hook: AfterReconnect) -> None:
    """Runs ``hook`` after every reconnect of ``nc``, once the streams and buckets are
    declared again (a server that came back without its JetStream state has none)."""
    _after_reconnect.setdefault(nc, []).append(hook)


def forget_reconnect(nc: NATS, hook: AfterReconnect) -> None:
    """Stops running ``hook`` after reconnects (one given to :func:`after_reconnect`)."""
    hooks = _after_reconnect.get(nc, [])
    if hook in hooks:
        hooks.remove(hook)


async def on_connection_change(nc: NATS, hook: ConnectionHook) -> None:
    """Calls ``hook(False)`` whenever ``nc`` loses its connection (not when this process
    closes it) and ``hook(True)`` when it has reconnected; once now, with its state."""
    _on_connection.setdefault(nc, []).append(hook)
    await hook(nc.is_connected)


async def _connection_changed(nc: NATS, connected: bool) -> None:
    for hook in _on_connection.get(nc, []):
        try:
            await hook(connected)
        except Exception:
            log.exception("reporting the nats connection's state failed")


async def backoff(nc: NATS, delay: float) -> None:
    """Waits ``delay`` seconds after a failure, or less: until ``nc`` has reconnected and
    declared the streams again, so that a loop backing off through an outage resumes as
    soon as NATS is back rather than up to its longest delay later."""
    woken = asyncio.Event()
    waiting = _backing_off.setdefault(nc, set())
    waiting.add(woken)
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await woken.wait()
    finally:
        waiting.discard(woken)


async def _declare_again(nc: NATS, settings: CommonSettings, create: bool) -> None:
    js = nc.jetstream(timeout=10)
    delay = 0.5
    try:
        for attempt in range(1, REDECLARE_ATTEMPTS + 1):
            try:
                if create:
                    await ensure_streams(js, settings)
                    await ensure_buckets(js, settings)
                    await object_store(js, settings)
                for hook in _after_reconnect.get(nc, []):
                    await hook(js)
                return
            except Exception as exc:
                if attempt == REDECLARE_ATTEMPTS or not nc.is_connected:
                    log.warning("declaring streams and buckets after a reconnect failed: %s", exc)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
    finally:
        for woken in _backing_off.get(nc, set()):
            woken.set()


def declares(settings: CommonSettings, role: str) -> bool:
    """Whether a service of ``role`` declares the streams and buckets: the store always;
    the others only when they connect without credentials (then whichever starts first
    does). With credentials they may not (conveyor.natsauth) and wait for the store."""
    return role == subjects.STORE or not settings.nats_authenticated


def _tls(settings: CommonSettings) -> ssl.SSLContext | None:
    if not settings.nats_tls_ca:
        return None
    context = ssl.create_default_context(cafile=settings.nats_tls_ca)
    if settings.nats_tls_cert:
        context.load_cert_chain(settings.nats_tls_cert, settings.nats_tls_key)
    return context


def _credentials(settings: CommonSettings, role: str) -> dict[str, Any]:
    """nats.connect's options for this service's identity: its user and password (read
    from its file here, so it is never in the environment), or a .creds file; and the
    inbox prefix its role's permissions allow."""
    options: dict[str, Any] = {}
    if role:
        options["inbox_prefix"] = natsauth.inbox_prefix(role)
    if settings.nats_creds:
        options["user_credentials"] = settings.nats_creds
    elif settings.nats_user:
        options["user"] = settings.nats_user
        options["password"] = Path(settings.nats_password_file).read_text().strip()
    tls = _tls(settings)
    if tls is not None:
        options["tls"] = tls
    return options


async def connect(
    settings: CommonSettings, name: str, metrics: ServiceMetrics | None = None, role: str = ""
) -> NATS:
    """A NATS connection that keeps reconnecting for as long as the process lives, and
    declares the streams and buckets again after each reconnect (``after_reconnect``), if
    ``role`` declares them (:func:`declares`). ``role`` (a ``subjects.PUBLISHERS`` role)
    picks the inbox prefix its NATS user may use; "" keeps nats-py's."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats error: %s", exc)

    async def on_disconnect() -> None:
        if nc.is_closed:  # closed by this process (it is stopping), not lost
            log.info("nats connection closed")
        else:
            log.warning("nats disconnected")
            await _connection_changed(nc, False)
        if metrics is not None:
            metrics.nats_changed(connected=False)

    async def on_reconnect() -> None:
        log.info("nats reconnected")
        if metrics is not None:
            metrics.nats_changed(connected=True)
        await _connection_changed(nc, True)
        again = _declare_again(nc, settings, declares(settings, role))
        task = asyncio.create_task(again, name="declare-again")
        _redeclaring.add(task)
        task.add_done_callback(_redeclaring.discard)

    nc: NATS = await nats.connect(
        # A cluster is given as a comma-separated list of URLs.
        [url.strip() for url in settings.nats_url.split(",") if url.strip()],
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        ping_interval=settings.nats_ping_interval_seconds,
        max_outstanding_pings=PING_MAX_OUTSTANDING,
        allow_reconnect=True,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        **_credentials(settings, role),
    )
    if metrics is not None:
        metrics.nats_changed(connected=True, reconnect=False)
    return nc


def _max_msg_size(max_bytes: int) -> int:
    return min(MAX_MSG_BYTES, max_bytes) if max_bytes > 0 else MAX_MSG_BYTES


def stream_configs(settings: CommonSettings) -> list[StreamConfig]:
    """The streams Conveyor needs."""
    limits = settings.stream_limits
    return [
        StreamConfig(
            name=subjects.STREAM_TASKS,
            description="Queued Conveyor tasks; each is removed when a worker acks it",
            subjects=[f"{subjects.TASKS_PREFIX}.>", f"{subjects.DELAYED_PREFIX}.>"],
            allow_msg_schedules=True,
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=settings.stream_replicas,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            # No max_msgs or max_bytes: with message schedules the server allows only
            # discard old, which would drop queued tasks; the gateway counts instead.
            max_msg_size=MAX_MSG_BYTES,
        ),
        StreamConfig(
            name=subjects.STREAM_EVENTS,
            description="Every Conveyor task event, in order; the store's input",
            subjects=[f"{subjects.EVENTS_PREFIX}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=settings.stream_replicas,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            max_age=EVENTS_MAX_AGE_SECONDS,
            # Events the store has not applied are never dropped: past its size the stream
            # refuses, and the store removes applied ones long before (store.trim).
            discard=DiscardPolicy.NEW,
            max_bytes=limits.events_max_bytes or -1,
            max_msg_size=_max_msg_size(limits.events_max_bytes),
        ),
    ]


async def ensure_streams(js: JetStreamContext, settings: CommonSettings) -> None:
    """Creates the streams, or updates them to this configuration. Safe to race."""
    for config in stream_configs(settings):
        await _add_or_update(js, config)


async def _add_or_update(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await _add_or_update_once(js, config)
    except nats.js.errors.APIError as exc:
        if exc.err_code == INSUFFICIENT_STORAGE:
            raise StorageTooSmall(config.name or "", exc) from exc
        raise


async def _add_or_update_once(js: JetStreamContext, config: StreamConfig) -> None:
    for attempt in range(5):
        try:
            await js.add_stream(config)
            return
        except BadRequestError as exc:
            if exc.err_code == 10058:  # stream name already in use with another config
                await js.update_stream(config)
                return
            raise
        except (TimeoutError, nats.errors.NoRespondersError):
            # JetStream may still be starting or electing a leader.
            await asyncio.sleep(0.2 * (attempt + 1))
    await js.add_stream(config)


async def bucket(
    js: JetStreamContext, name: str, settings: CommonSettings, create: bool = True, **options: Any
) -> KeyValue:
    """The KV bucket ``name``, created if missing (without ``create``: waited for)."""
    if not create:
        return await _declared(f"the {name} bucket", lambda: js.key_value(name))
    try:
        return await js.key_value(name)
    except nats.js.errors.BucketNotFoundError:
        pass
    kv_config = KeyValueConfig(
        bucket=name,
        storage=StorageType.FILE,
        replicas=settings.stream_replicas,
        **options,
    )
    try:
        return await js.create_key_value(kv_config)
    except BadRequestError:
        return await js.key_value(name)  # another process created it first


async def ensure_buckets(
    js: JetStreamContext, settings: CommonSettings, create: bool = True
) -> dict[str, KeyValue]:
    """Every KV bucket Conveyor uses, by name (created if missing, or waited for)."""
    ttls = {subjects.KV_IDEMPOTENCY: 30 * 24 * 3600.0, subjects.KV_CANCELLED: CANCELLED_TTL}
    found: dict[str, KeyValue] = {}
    for name in subjects.KV_BUCKETS:
        options = {"ttl": ttls[name]} if name in ttls else {}
        found[name] = await bucket(js, name, settings, create, **options)
    return found


WAIT_LOG_EVERY = 10.0
"""Seconds between two logs of a service waiting for the store to declare something."""


async def _declared(what: str, find: Callable[[], Awaitable[T]]) -> T:
    """What ``find`` finds, once the store has declared it: a service whose credentials
    may not declare streams and buckets waits for them, whatever the start-up order."""
    logged = 0.0
    while True:
        try:
            return await find()
        except (nats.js.errors.NotFoundError, nats.js.errors.BucketNotFoundError):
            now = asyncio.get_running_loop().time()
            if now - logged >= WAIT_LOG_EVERY:
                log.info("waiting for the store to declare %s", what)
                logged = now
            await asyncio.sleep(0.5)


async def object_store(
    js: JetStreamContext, settings: CommonSettings, create: bool = True
) -> ObjectStore:
    """The object store of large payloads, created if missing (or waited for)."""
    if not create:
        found: ObjectStore = await _declared(
            f"the {subjects.OBJECT_PAYLOADS} object store",
            lambda: js.object_store(subjects.OBJECT_PAYLOADS),
        )
        return found
    try:
        return await js.object_store(subjects.OBJECT_PAYLOADS)
    except nats.js.errors.BucketNotFoundError:
        pass
    config = ObjectStoreConfig(storage=StorageType.FILE, replicas=settings.stream_replicas)
    try:
        return await js.create_object_store(subjects.OBJECT_PAYLOADS, config)
    except BadRequestError:
        return await js.object_store(subjects.OBJECT_PAYLOADS)  # another process was first


async def setup(
    settings: CommonSettings, name: str, metrics: ServiceMetrics | None = None, role: str = ""
) -> tuple[NATS, JetStreamContext]:
    """Connects, declares the streams (or waits for the store to, :func:`declares`), and
    returns the connection and context."""
    nc = await connect(settings, name, metrics, role)
    js = nc.jetstream(timeout=10)
    try:
        if declares(settings, role):
            await ensure_streams(js, settings)
        else:
            for stream in (subjects.STREAM_TASKS, subjects.STREAM_EVENTS):
                await _declared(f"the {stream} stream", functools.partial(js.stream_info, stream))
    except BaseException:
        await close(nc)
        raise
    return nc, js


async def close(nc: NATS) -> None:
    """Flushes what was published (acks included) and closes. Not drain(): draining pull
    subscriptions can wait out its whole timeout on an idle server."""
    if nc.is_closed:
        return
    try:
        await nc.flush(timeout=2)
    except Exception as exc:
        log.warning("nats flush on close failed: %s", exc)
    try:
        await nc.close()
    except (ConnectionError, RuntimeError) as exc:
        # The connection was lost before or while closing (a service stopped while NATS
        # was down): nats-py still writes what it buffered to the dead transport, which
        # uvloop refuses with a RuntimeError, and stopping must not fail for it.
        log.warning("nats connection lost while closing: %s", exc)
