"""JetStream pull requests sent by hand, on an inbox of their own: the store's event
consumer and the worker's task consumers share this one primitive.

nats-py's ``PullSubscription.fetch`` waits for every message with ``next_msg()``, which
makes a uuid, a task and a ``wait_for`` timer per message, several times the CPU of the
callback used here. Instead, a request is published to
``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`` with the inbox as its reply subject,
and the inbox's callback hands each message to the caller the moment it arrives.

JetStream answers a request with up to ``batch`` messages, then (if fewer came) a status
without a reply subject: 404 no (more) messages, 408 the request expired, 100 an idle
heartbeat (ignored), anything else an error (409 consumer deleted or too many waiting
requests, 503 no consumer answers) that the caller raises as :class:`PullError`. A
request unanswered past its expiry plus the caller's ``patience`` was lost (NATS away or
restarted): the caller ends it, and may move to a new inbox so that a late answer is
not taken for the answer to a later request.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import DEFAULT_PREFIX

QUIET_ENDS = frozenset({"404", "408"})
"""Statuses that end a request without an error: no (more) messages; it expired."""
HEARTBEAT = "100"


class PullError(Exception):
    """Raised when JetStream ends a pull request with an error status (409, 503 ...)."""


def next_subject(stream: str, consumer: str) -> str:
    """The subject pull requests for a durable consumer are sent to."""
    return f"{DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.{stream}.{consumer}"


def _ack_tokens(msg: Msg) -> list[str] | None:
    """The tokens of a delivered message's reply subject in its usual form,
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>``;
    None for another (domain, account hash) or none."""
    tokens = (getattr(msg, "reply", None) or "").split(".")
    if len(tokens) == 9 and tokens[0] == "$JS" and tokens[1] == "ACK":
        return tokens
    return None


def delivery_count(msg: Msg) -> int:
    """How many times JetStream has delivered the message, this time included. Read
    straight from the reply subject: nats-py's ``metadata`` also builds a datetime and
    several objects per message, a visible share of a worker's CPU per task."""
    tokens = _ack_tokens(msg)
    if tokens is not None:
        return int(tokens[4]) or 1
    return msg.metadata.num_delivered or 1


def stream_sequence(msg: Msg) -> int:
    """The message's sequence in its stream."""
    tokens = _ack_tokens(msg)
    if tokens is not None:
        return int(tokens[5])
    return msg.metadata.sequence.stream


def stored_at(msg: Msg) -> float | None:
    """When the stream stored the message, in seconds since the epoch (None if unknown)."""
    tokens = _ack_tokens(msg)
    if tokens is not None:
        return int(tokens[7]) / 1e9
    stamp = msg.metadata.timestamp
    return stamp.timestamp() if stamp is not None else None


@functools.lru_cache(maxsize=512)
def request_body(batch: int, expires: float | None) -> bytes:
    """A pull request for ``batch`` messages: answered at once (``no_wait``) when
    ``expires`` is None, else held by the server for ``expires`` seconds. Kept: a consumer
    asks for the same few bodies over and over, each a JSON encoding."""
    body: dict[str, object] = {"batch": batch}
    if expires is None:
        body["no_wait"] = True
    else:
        body["expires"] = int(expires * 1e9)
    return json.dumps(body).encode()


class PullInbox:
    """One inbox of one consumer with at most one pull request outstanding.

    Subclasses take the messages in :meth:`delivered_one` and learn of each request's end in
    :meth:`ended`; both run in the subscription's callback, so they must not block.
    """

    __slots__ = (
        "_nc",
        "_subject",
        "closed",
        "deadline",
        "delivered",
        "failure",
        "inbox",
        "name",
        "patience",
        "sub",
        "wanted",
    )

    def __init__(
        self,
        nc: NATS,
        subject: str,
        patience: float,
        name: str = "",
    ) -> None:
        self._nc = nc
        self._subject = subject
        self.patience = patience
        """How long an unanswered request is waited for beyond its own expiry."""
        self.name = name
        self.wanted = 0
        """Messages the open request may still bring; 0 while none is open."""
        self.delivered = 0
        """Messages the last request brought."""
        self.deadline = 0.0
        """When (``time.monotonic``) the open request counts as lost."""
        self.failure = ""
        """How the last request failed (an error status), "" while none did."""
        self.closed = asyncio.Event()
        self.closed.set()
        self.inbox = ""
        self.sub: Subscription | None = None

    async def subscribe(self) -> None:
        """Subscribes to a new inbox, where the requests sent from now on are answered."""
        self.inbox = self._nc.new_inbox()
        self.sub = await self._nc.subscribe(self.inbox, cb=self._received)

    async def request(self, batch: int, expires: float | None) -> None:
        """Sends a request for ``batch`` messages (see :func:`request_body`)."""
        self.wanted = batch
        self.delivered = 0
        self.failure = ""
        self.deadline = time.monotonic() + (expires or 0.0) + self.patience
        self.closed.clear()
        try:
            await self._nc.publish(self._subject, request_body(batch, expires), reply=self.inbox)
        except BaseException:
            self.end()
            raise

    def end(self) -> None:
        """Ends the open request (answered, or taken as lost)."""
        unfilled, self.wanted = self.wanted, 0
        self.ended(unfilled)
        self.closed.set()

    def delivered_one(self, msg: Msg, expected: bool) -> None:
        """Takes one message as it arrives; ``expected`` is False for one beyond what the
        open request asked for (a late answer, or one to a request taken as lost)."""

    def ended(self, unfilled: int) -> None:
        """A request ended, ``unfilled`` of its messages never to come."""

    async def lost(self) -> None:
        """No answer came (NATS away): ends the request and moves to a new inbox, so a
        late answer cannot be taken for the answer to a later request."""
        old = self.sub
        await self.subscribe()  # first: whoever the end wakes asks on the new inbox
        self.end()
        if old is not None:
            with contextlib.suppress(Exception):
                await old.unsubscribe()

    def raise_failure(self) -> None:
        """Raises PullError (once) if the last request ended with an error status."""
        if self.failure:
            failure, self.failure = self.failure, ""
            raise PullError(failure)

    async def _received(self, msg: Msg) -> None:
        if not msg.reply:
            headers = msg.headers
            status = headers.get("Status") if headers else None
            if status == HEARTBEAT:
                return
            if status not in QUIET_ENDS:
                description = headers.get("Description", "") if headers else ""
                description = description.split("\n", 1)[0].strip()  # a 503 has none
                self.failure = f"{self.name} pull request ended: {status} {description}"
            self.end()
            return
        wanted = self.wanted
        if wanted > 0:
            self.wanted = wanted - 1
        self.delivered += 1
        self.delivered_one(msg, wanted > 0)
        if wanted == 1:
            self.end()
