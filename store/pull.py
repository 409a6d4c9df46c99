"""Pull requests for the store's durable consumer, on the shared primitive
(``conveyor/pull.py``): the inbox's callback appends each message to a queue and a fetch
waits on one event per wake-up, not one ``next_msg()`` per message.

A fetch first asks with ``no_wait`` (answered at once: what is there, then "404 no
messages" if that is fewer than asked); only if nothing is there does it long-poll. A
long-poll stays open after its first message arrives, so the messages that follow are
delivered while the batch before them is applied and the next fetch returns them
without a round trip. One request is open at a time.
"""

from __future__ import annotations

import asyncio
import collections
import logging

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from conveyor.pull import PullInbox

log = logging.getLogger(__name__)

REQUEST_PATIENCE = 1.0
"""How long an unanswered request is waited for beyond its own expiry before it is taken
as lost (NATS away or restarted) and a new one may be sent; about what nats-py's fetch
waits, so events resume as soon after a reconnect."""


class Puller(PullInbox):
    """Fetches batches of a durable pull consumer through ``subject``
    (``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>``)."""

    __slots__ = ("_ready", "_wake")

    def __init__(self, nc: NATS, subject: str) -> None:
        super().__init__(nc, subject, REQUEST_PATIENCE, "events")
        self._ready: collections.deque[Msg] = collections.deque()
        self._wake = asyncio.Event()

    async def start(self) -> None:
        """Subscribes to the inbox the requests are answered on."""
        await self.subscribe()

    def reconnected(self) -> None:
        """The connection came back: a request open before it went was sent to a server
        that may be gone, so it is taken as lost now rather than after its patience."""
        if not self.closed.is_set():
            self.end()

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to ``batch`` messages, in delivery order; waits up to ``timeout`` for the
        first. Raises TimeoutError when none came, PullError on an error status."""
        if not self._ready and self.closed.is_set():
            await self.request(batch, None)
            await self._wait(self.patience, until_end=True)
            if not self._ready:
                self.raise_failure()
        if not self._ready:
            if self.closed.is_set():
                await self.request(batch, timeout)
            await self._wait(timeout + self.patience, until_end=False)
            if not self._ready:
                self.raise_failure()
                raise TimeoutError
        ready = self._ready
        if len(ready) <= batch:
            self._ready = collections.deque()
            return list(ready)
        return [ready.popleft() for _ in range(batch)]

    async def _wait(self, limit: float, *, until_end: bool) -> None:
        """Waits until the request ends or (unless ``until_end``) a message is ready, at
        most ``limit`` seconds; then a request still open is taken as lost."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        closed = self.closed
        while not closed.is_set() and (until_end or not self._ready):
            self._wake.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning("a pull request for events went unanswered; sending another")
                self.end()
                return
            try:
                async with asyncio.timeout(remaining):
                    await self._wake.wait()
            except TimeoutError:
                continue

    def delivered_one(self, msg: Msg, expected: bool) -> None:
        self._ready.append(msg)
        self._wake.set()

    def ended(self, unfilled: int) -> None:
        self._wake.set()
