"""Pull requests for the store's durable consumer, answered on an inbox of its own.

nats-py's ``PullSubscription.fetch`` waits for every message of a batch with
``next_msg()``, which makes a uuid, a task and a ``wait_for`` timer per message: about 20
µs of CPU each, as much as applying the event. Here the inbox subscription's callback
appends each message to a queue and the fetch waits on one event per wake-up.

A fetch first asks with ``no_wait`` (answered at once: what is there, then "404 no
messages" if that is fewer than asked); only if nothing is there does it long-poll. A
long-poll stays open after its first message arrives, so the messages that follow are
delivered while the batch before them is applied and the next fetch returns them
without a round trip. One request is open at a time.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = logging.getLogger(__name__)

REQUEST_PATIENCE = 1.0
"""How long an unanswered request is waited for beyond its own expiry before it is taken
as lost (NATS away or restarted) and a new one may be sent; about what nats-py's fetch
waits, so events resume as soon after a reconnect."""
_ENDS_QUIETLY = frozenset({"404", "408"})  # no (more) messages; the request expired


class PullError(Exception):
    """Raised when JetStream ends a pull request with an error status (409 ...)."""


def _raise_failed(request: _Request) -> None:
    if request.status is not None and request.status not in _ENDS_QUIETLY:
        # During a leader election requests fail at once: the caller backs off.
        raise PullError(f"pull request for events ended with status {request.status}")


class _Request:
    __slots__ = ("ended", "status", "wanted")

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.ended = False
        self.status: str | None = None


class Puller:
    """Fetches batches of a durable pull consumer through ``subject``
    (``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>``)."""

    def __init__(self, nc: NATS, subject: str) -> None:
        self._nc = nc
        self._subject = subject
        self._ready: collections.deque[Msg] = collections.deque()
        self._open: _Request | None = None
        self._wake = asyncio.Event()
        self._inbox = ""
        self._sub: Subscription | None = None

    async def start(self) -> None:
        """Subscribes to the inbox the requests are answered on."""
        self._inbox = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_message)

    def reconnected(self) -> None:
        """The connection came back: a request open before it went was sent to a server
        that may be gone, so it is taken as lost now rather than after its patience."""
        if self._open is not None:
            self._end(self._open, None)
            self._wake.set()

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to ``batch`` messages, in delivery order; waits up to ``timeout`` for the
        first. Raises TimeoutError when none came, PullError on an error status."""
        if not self._ready and self._open is None:
            request = await self._request(batch, None)
            await self._wait(request, REQUEST_PATIENCE, until_end=True)
            if not self._ready:
                _raise_failed(request)
        if not self._ready:
            request = self._open or await self._request(batch, timeout)
            await self._wait(request, timeout + REQUEST_PATIENCE, until_end=False)
            if not self._ready:
                _raise_failed(request)
                raise TimeoutError
        ready = self._ready
        if len(ready) <= batch:
            self._ready = collections.deque()
            return list(ready)
        return [ready.popleft() for _ in range(batch)]

    async def _request(self, batch: int, expires: float | None) -> _Request:
        body: dict[str, object] = {"batch": batch}
        if expires is None:
            body["no_wait"] = True
        else:
            body["expires"] = int(expires * 1e9)
        request = self._open = _Request(batch)
        try:
            await self._nc.publish(self._subject, json.dumps(body).encode(), reply=self._inbox)
        except BaseException:
            self._end(request, None)
            raise
        return request

    async def _wait(self, request: _Request, limit: float, *, until_end: bool) -> None:
        """Waits until the request ends or (unless ``until_end``) a message is ready, at
        most ``limit`` seconds; then a request still open is taken as lost."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while not request.ended and (until_end or not self._ready):
            self._wake.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning("a pull request for events went unanswered; sending another")
                self._end(request, None)
                return
            try:
                async with asyncio.timeout(remaining):
                    await self._wake.wait()
            except TimeoutError:
                continue

    def _end(self, request: _Request, status: str | None) -> None:
        request.ended = True
        request.status = status
        if self._open is request:
            self._open = None

    async def _on_message(self, msg: Msg) -> None:
        request = self._open
        if not msg.reply:
            # A status ends the open request: 404 no (more) messages, 408 expired, 409 ...
            status = msg.headers.get("Status") if msg.headers else None
            if status == "100":
                return  # a heartbeat
            if status not in _ENDS_QUIETLY:
                log.debug("pull request for events ended: %s", msg.headers)
            if request is not None:
                self._end(request, status or "")
        else:
            self._ready.append(msg)
            if request is not None:
                request.wanted -= 1
                if request.wanted <= 0:
                    self._end(request, None)
        self._wake.set()
