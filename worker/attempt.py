"""What one delivery keeps up while it runs: its lazily published start, and its lease
(while the handler runs, and while an event publish is slow)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.msg import Msg

from conveyor.tasks import timestamp

log = logging.getLogger(__name__)

LEASE_BEAT = 1.0
"""How often a slow publish tells JetStream the task is still held: within the shortest
lease allowed (CONVEYOR_ACK_WAIT_SECONDS >= 1)."""


class AttemptStart:
    """The ``started`` event of one attempt, published once the attempt has run for
    ``delay`` seconds (at once when ``delay`` is 0).

    An attempt that ends sooner publishes no ``started`` event: its outcome carries the
    start time instead, and the store records the start from it as its own version. A
    short task then costs one event fewer to publish, store and apply, and watchers
    still see it RUNNING; a long one is shown RUNNING at most ``delay`` late.
    """

    def __init__(
        self, publish: Callable[[Timestamp], Coroutine[Any, Any, None]], delay: float
    ) -> None:
        self.time = timestamp()
        self._publish = publish
        self._delay = delay
        self._timer: asyncio.TimerHandle | None = None
        self._sending: asyncio.Task[None] | None = None

    async def begin(self) -> None:
        """Publishes the start now (no delay) or arms the timer that will."""
        if self._delay <= 0:
            self._send()
            await self.now()
        else:
            self._timer = asyncio.get_running_loop().call_later(self._delay, self._send)

    def _send(self) -> None:
        self._timer = None
        self._sending = asyncio.get_running_loop().create_task(self._publish(self.time))
        # Retrieved here too: a task handed back on shutdown never awaits its outcome.
        self._sending.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def now(self) -> None:
        """Makes sure the start is published (before a progress event, which must
        follow it); raises if publishing it failed."""
        if self._timer is not None:
            self._timer.cancel()
            self._send()
        if self._sending is not None:
            await asyncio.shield(self._sending)

    async def outcome_start(self) -> Timestamp | None:
        """The start time the outcome event must carry: None once the ``started`` event
        is recorded; the time when it was not published (not due yet) or not taken."""
        if self._timer is not None:
            self.cancel()
            return self.time
        if self._sending is None:
            return None
        try:
            await asyncio.shield(self._sending)
        except Exception as exc:
            log.warning("recording the start failed (%s); the outcome carries it", exc)
            return self.time
        return None

    def cancel(self) -> None:
        """Stops a pending publish of the start (the attempt is over or handed back)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Beats:
    """Keeps the leases of the messages it holds: one task for all of them wakes every
    quarter ``interval`` and sends ``in_progress`` for each message held (or last beaten)
    at least five eighths of ``interval`` ago. A message so gets its first beat within
    seven eighths of ``interval`` of ``hold``, and one every three quarters after, as a
    timer of its own would (within ``interval``); holding one for less (nearly always)
    costs a dict entry, not a timer or a task. The task runs only while something is
    held."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        # By id() (a nats-py Msg is not hashable): the message, its holds, when it was
        # held or last beaten (time.monotonic).
        self._held: dict[int, list[Any]] = {}
        self._beater: asyncio.Task[None] | None = None

    def hold(self, msg: Msg) -> None:
        key = id(msg)
        entry = self._held.get(key)
        if entry is not None:
            entry[1] += 1
            return
        self._held[key] = [msg, 1, time.monotonic()]
        if self._beater is None:
            self._beater = asyncio.get_running_loop().create_task(self._beat(), name="beats")

    def release(self, msg: Msg) -> None:
        key = id(msg)
        entry = self._held.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] <= 0:
                del self._held[key]

    async def _beat(self) -> None:
        held = self._held
        due = self.interval * 5 / 8
        try:
            while held:
                await asyncio.sleep(self.interval / 4)
                for key, entry in list(held.items()):
                    if time.monotonic() - entry[2] >= due and held.get(key) is entry:
                        entry[2] = time.monotonic()
                        await _send(entry[0])
        finally:
            self._beater = None


async def _send(msg: Msg) -> None:
    try:
        await msg.in_progress()
    except Exception as exc:  # NATS away: the next beat may get through
        log.warning("could not renew the lease of a task: %s", exc)
