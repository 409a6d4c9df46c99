"""Which tasks are cancelled, known without a round trip per task."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from conveyor import buckets
from conveyor.jetstream import CANCELLED_TTL
from conveyor.lifecycle import cancel_and_wait

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 5.0
PRUNE_EVERY = 3600.0
"""How often ids learnt longer ago than the markers live are dropped."""


class CancelledTasks:
    """The ids of cancelled tasks, kept current by a watch of the ``conveyor_cancelled``
    bucket (and by cancel signals), so checking a task before it starts costs no round
    trip.

    The set is trusted only while the watch is live: from the moment it holds every
    marker present when the watch (re)started, and for as long as the connection has not
    reconnected since (a marker put while the connection was away may not have reached
    the watch yet). Otherwise a check reads the bucket, and a
    reconnect restarts the watch."""

    def __init__(self, kv: KeyValue, reconnects: Callable[[], int]) -> None:
        self._kv = kv
        self._reconnects = reconnects
        self.ids: dict[str, float] = {}
        """Cancelled ids, each with the (monotonic) time it was learnt."""
        self._pruned = time.monotonic()
        self._live_at: int | None = None
        self._loaded = asyncio.Event()
        self._watch: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 5.0) -> None:
        """Starts the watch and waits (up to ``timeout``) for the markers present now."""
        self._restart()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._loaded.wait()

    async def stop(self) -> None:
        if self._watch is not None:
            await cancel_and_wait(self._watch)

    def _restart(self) -> None:
        self._live_at = None
        self._loaded.clear()
        if self._watch is not None:
            self._watch.cancel()
        self._watch = asyncio.create_task(self._follow(), name="cancelled-tasks")

    async def _follow(self) -> None:
        while True:
            live = functools.partial(self._went_live, self._reconnects())
            try:
                await buckets.follow_once(self._kv, self._changed, live)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("watch of cancelled tasks stopped (%s); restarting", exc)
            self._live_at = None
            await asyncio.sleep(1.0)

    def _went_live(self, reconnects: int) -> None:
        """Every marker present when the watch started is in (``reconnects`` then)."""
        self._live_at = reconnects
        self._loaded.set()

    async def _changed(self, task_id: str, marker: bytes | None) -> None:
        if marker is None:
            self.ids.pop(task_id, None)
        else:
            self.add(task_id)

    def add(self, task_id: str) -> None:
        """A cancelled task (a marker seen by the watch, or a cancel signal: the task is
        cancelled whatever the watch says yet).

        Markers expire from the bucket after CANCELLED_TTL without the watch telling, so
        ids learnt longer ago than that are forgotten here too: the set stays bounded, and
        a forgotten id's marker is gone from the bucket as well."""
        now = time.monotonic()
        self.ids[task_id] = now
        if now - self._pruned > PRUNE_EVERY:
            self._pruned = now
            expired = [i for i, seen in self.ids.items() if now - seen > CANCELLED_TTL]
            for expired_id in expired:
                del self.ids[expired_id]

    async def is_cancelled(self, task_id: str) -> bool:
        """Whether the task is cancelled: "no" from the set while it is trusted (the
        common case, no round trip); "yes" is always confirmed by reading the bucket (a
        re-drive deletes the marker just before queueing the task again, and the watch
        may not have shown the deletion yet)."""
        known = task_id in self.ids
        live_at = self._live_at
        if not known and live_at is not None and live_at == self._reconnects():
            return False
        if live_at is not None and live_at != self._reconnects():
            self._restart()  # reconnected since the watch was complete
        try:
            entry = await asyncio.wait_for(self._kv.get(task_id), CHECK_TIMEOUT)
        except KeyNotFoundError:
            self.ids.pop(task_id, None)
            return False
        except Exception as exc:
            log.warning("could not check cancellation of %s: %s", task_id, exc)
            return known
        if not entry.value:
            self.ids.pop(task_id, None)
        return bool(entry.value)
