"""JetStream publishes awaiting their acknowledgement, with less work per publish than
``JetStreamContext.publish``: one reply subscription for all of them, a future each and
a timer per exchange; no request task, no wait_for, no PubAck object built from JSON. Every
service publishes through it (``conveyor.messages.publisher``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.js.errors import APIError


class AckedPublisher:
    """Publishes and waits for the stream's acknowledgement. An error answer, "no
    responders" (no stream takes the subject) or no answer within ``timeout`` raises
    (APIError, NoRespondersError, TimeoutError)."""

    def __init__(self, nc: NATS, timeout: float) -> None:
        self._nc = nc
        self._timeout = timeout
        self._prefix = nc.new_inbox()
        self._waiting: dict[str, asyncio.Future[Msg]] = {}
        self._next = 0
        self._opening: asyncio.Future[None] | None = None

    @property
    def max_payload(self) -> int:
        """The largest message the server takes (its INFO), or NATS's default before one."""
        return self._nc.max_payload or 1024 * 1024

    async def _open(self) -> None:
        await self._nc.subscribe(f"{self._prefix}.*", cb=self._on_reply)

    async def _on_reply(self, msg: Msg) -> None:
        waiting = self._waiting.pop(msg.subject[len(self._prefix) + 1 :], None)
        if waiting is not None and not waiting.done():
            waiting.set_result(msg)

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        """Publishes ``data`` and returns once the stream acknowledged it."""
        await self.publish_all([(subject, data, headers)])

    async def publish_all(self, messages: Sequence[tuple[str, bytes, dict[str, str]]]) -> None:
        """Publishes every (subject, data, headers) message at once, then returns when the
        streams acknowledged all of them; raises the first refusal found, in order.

        The messages go out together (one write when nothing else is pending) and their
        answers are awaited together: one round trip for all, not one each."""
        await self._exchange(messages)

    async def publish_sequence(self, subject: str, data: bytes, headers: dict[str, str]) -> int:
        """Publishes ``data`` and returns the stream sequence it was stored at (or, for a
        repeat, the sequence of the message it repeats)."""
        [reply] = await self._exchange([(subject, data, headers)])
        sequence: int = json.loads(reply.data)["seq"]
        return sequence

    async def publish_each(
        self, messages: Sequence[tuple[str, bytes, dict[str, str]]]
    ) -> list[BaseException | None]:
        """As ``publish_all``, but each message's own outcome, in order (None: stored), for
        callers that answer several parties from one exchange."""
        return [
            answer if isinstance(answer, BaseException) else None
            for answer in await self._settled(messages)
        ]

    async def _exchange(self, messages: Sequence[tuple[str, bytes, dict[str, str]]]) -> list[Msg]:
        """Publishes the messages together and returns their acknowledgements, in order."""
        replies = []
        for answer in await self._settled(messages):
            if isinstance(answer, BaseException):
                raise answer
            replies.append(answer)
        return replies

    async def _settled(
        self, messages: Sequence[tuple[str, bytes, dict[str, str]]]
    ) -> list[Msg | BaseException]:
        """Publishes the messages together; each one's acknowledgement or error, in order."""
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open())
        if not self._opening.done():
            await asyncio.shield(self._opening)
        loop = asyncio.get_running_loop()
        waits: list[tuple[str, asyncio.Future[Msg]]] = []
        # One timer for the whole exchange (its messages go out together): every wait is
        # bounded, without a timer made and cancelled per message.
        timer = loop.call_later(self._timeout, _time_out, waits)
        try:
            for subject, data, headers in messages:
                self._next += 1
                token = str(self._next)
                answer: asyncio.Future[Msg] = loop.create_future()
                self._waiting[token] = answer
                waits.append((token, answer))
                reply_to = f"{self._prefix}.{token}"
                await self._nc.publish(subject, data, reply=reply_to, headers=headers)
            replies: list[Msg | BaseException] = []
            for _, answer in waits:
                try:
                    replies.append(_check(await answer))
                except (APIError, NoRespondersError, TimeoutError) as exc:
                    replies.append(exc)
            return replies
        finally:
            timer.cancel()
            for token, answer in waits:
                self._waiting.pop(token, None)
                if answer.done() and not answer.cancelled():
                    answer.exception()  # retrieved: one raised, the rest are not logged


def _check(reply: Msg) -> Msg:
    """The answer to a publish; raises if it is not an acknowledgement."""
    if not reply.data:  # a status: 503 no responders (no stream takes the subject)
        status = reply.headers.get("Status") if reply.headers else None
        if status == "503":
            raise NoRespondersError
        raise APIError(description=f"publish answered with status {status}")
    if b'"error"' in reply.data:
        error = json.loads(reply.data).get("error") or {}
        raise APIError(
            code=error.get("code"),
            err_code=error.get("err_code"),
            description=error.get("description"),
        )
    return reply


def _time_out(waits: list[tuple[str, asyncio.Future[Msg]]]) -> None:
    for _, answer in waits:
        if not answer.done():
            answer.set_exception(TimeoutError("JetStream did not acknowledge the publish"))
