"""Reading Conveyor's KV buckets: the entries present now, read exactly, and every change.

nats-py's own ``KeyValue.keys()`` and watch can signal the end of the present entries
before all of them have arrived (nats-py issue #842); these helpers read them exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

log = logging.getLogger(__name__)

KEYS_BATCH = 256
KEYS_FETCH_TIMEOUT = 5.0
_REMOVED = frozenset({"DEL", "PURGE"})
_REMOVED_MARKERS = frozenset({"MaxAge", "Purge", "Remove"})


async def keys(kv: KeyValue) -> list[str]:
    """The keys of a bucket that hold a value now (deleted, purged and expired ones left
    out), in no particular order.

    Not ``KeyValue.keys()``: its watcher can signal the end before entries already on
    their way have arrived, and return too few keys or none (nats-py issue #842; seen here
    as a queue probe that found no types). Here a consumer made for the call, which sends
    nothing until asked, says when it is created how many entries there are, and exactly
    that many are fetched."""
    return list(await entries(kv, values=False))


async def entries(kv: KeyValue, values: bool = True) -> dict[str, bytes]:
    """The entries of a bucket that hold a value now, read exactly as :func:`keys` reads
    the keys (the values are b"" when ``values`` is False)."""
    js: JetStreamContext = kv._js  # nats-py keeps the bucket's context, stream and prefix
    stream: str = kv._stream
    prefix: str = kv._pre
    consumer = await js.add_consumer(
        stream,
        ConsumerConfig(
            filter_subject=f"{prefix}>",
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            ack_policy=AckPolicy.NONE,
            headers_only=not values,
            inactive_threshold=30.0,
        ),
    )
    assert consumer.name is not None
    remaining = consumer.num_pending or 0
    found: dict[str, bytes] = {}
    try:
        if remaining:
            sub = await js.pull_subscribe_bind(consumer.name, stream=stream)
            try:
                while remaining > 0:
                    for msg in await sub.fetch(min(remaining, KEYS_BATCH), KEYS_FETCH_TIMEOUT):
                        remaining -= 1
                        headers = msg.headers or {}
                        if headers.get("KV-Operation") in _REMOVED:
                            continue
                        if headers.get("Nats-Marker-Reason") in _REMOVED_MARKERS:
                            continue
                        found[msg.subject[len(prefix) :]] = msg.data if values else b""
            finally:
                await sub.unsubscribe()
    finally:
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(stream, consumer.name)
    return found


async def follow(
    kv: KeyValue,
    on_change: Callable[[str, bytes | None], Awaitable[None]],
    on_loaded: Callable[[], None] | None = None,
) -> None:
    """Calls ``on_change(key, value)`` for every entry of a bucket and then every change
    (value None: deleted), for as long as it runs; ``on_loaded`` once the entries present
    at the start are delivered (:func:`follow_once`). The watch is started again, a second
    after it ends or fails (NATS away)."""
    while True:
        honour_cancel()
        try:
            await follow_once(kv, on_change, on_loaded)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "watch of bucket %s stopped (%s); restarting", getattr(kv, "_name", "?"), exc
            )
        await asyncio.sleep(1.0)


async def follow_once(
    kv: KeyValue,
    on_change: Callable[[str, bytes | None], Awaitable[None]],
    on_loaded: Callable[[], None] | None = None,
) -> None:
    """One watch of a bucket, until it ends or fails: ``on_change(key, value)`` for every
    entry and then every change (value None: deleted).

    With ``on_loaded``, the entries present are read exactly (:func:`entries`) once the
    watch has started, and ``on_loaded`` follows them: the watch's own "caught up" marker
    can come before entries on their way (nats-py issue #842). The watch then delivers
    those entries again, and every change after them."""
    watcher = await kv.watchall()
    try:
        if on_loaded is not None:
            for key, value in (await entries(kv)).items():
                await on_change(key, value)
            on_loaded()
        # Checked before every wait for a change: that wait only ends with a change, so
        # a cancel lost on the way here would leave the watch running for good.
        honour_cancel()
        async for entry in watcher:
            if entry is not None and entry.key is not None:
                deleted = entry.operation in ("DEL", "PURGE") or not entry.value
                await on_change(entry.key, None if deleted else entry.value)
            honour_cancel()
    finally:
        with contextlib.suppress(Exception):
            await watcher.stop()  # type: ignore[no-untyped-call]


def honour_cancel() -> None:
    """Raises CancelledError in a task that was cancelled, even if nobody raised it.

    On Python 3.11, ``asyncio.wait_for`` returns the result instead of raising when the
    cancel arrives in the loop turn that completes what it waits for (CPython issue
    86296), and every nats-py request waits that way: a watch stopped while it starts can
    lose the cancel and wait for changes forever. ``Task.cancelling()`` still counts it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
