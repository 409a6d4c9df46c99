"""Publishing a task's events from the worker to the EVENTS stream."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.errors import APIError

from conveyor import subjects, tracing
from conveyor.api.events.v1 import events_pb2

PUBLISH_TIMEOUT = 5.0


def _now() -> Timestamp:
    """Now, built from integers (``Timestamp.FromDatetime`` validates and converts a
    datetime: a noticeable share of the worker's CPU per event)."""
    ns = time.time_ns()
    return Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


class EventPublisher:
    """Publishes TaskEvents, each with a Nats-Msg-Id so a repeated publish is dropped."""

    def __init__(self, js: JetStreamContext, worker_id: str, nc: NATS | None = None) -> None:
        self._js = js
        self.worker_id = worker_id
        self._acks = _PubAcks(nc) if nc is not None else None

    async def publish(
        self, message: events_pb2.TaskMessage, attempt: int, dedupe_key: str, **kind: Any
    ) -> None:
        """Publishes one event of kind ``kind`` (e.g. ``started=Started()``) and waits for
        the stream's acknowledgement."""
        event = events_pb2.TaskEvent(
            task_id=message.task_id,
            type=message.type,
            time=_now(),
            attempt=attempt,
            worker_id=self.worker_id,
            **kind,
        )
        subject = subjects.event_subject(message.type)
        data = event.SerializeToString()
        headers = tracing.inject(
            {subjects.HEADER_MSG_ID: f"{message.task_id}:{attempt}:{dedupe_key}"}
        )
        if self._acks is not None:
            await self._acks.publish(subject, data, headers)
            return
        # A rejected publish can leave its reply pending forever: bound the wait.
        await self._js.publish(subject, data, timeout=PUBLISH_TIMEOUT, headers=headers)


class _PubAcks:
    """JetStream publishes awaiting their acknowledgement, with less per-publish work than
    ``JetStreamContext.publish`` (no request task and wait_for, no PubAck object built
    from JSON): one reply subscription, a future and a timer per publish. An error
    answer, "no responders" (no stream) or no answer within PUBLISH_TIMEOUT raises."""

    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self._prefix = nc.new_inbox()
        self._waiting: dict[str, asyncio.Future[Msg]] = {}
        self._next = 0
        self._opening: asyncio.Future[None] | None = None

    async def _open(self) -> None:
        await self._nc.subscribe(f"{self._prefix}.*", cb=self._on_reply)

    async def _on_reply(self, msg: Msg) -> None:
        waiting = self._waiting.pop(msg.subject[len(self._prefix) + 1 :], None)
        if waiting is not None and not waiting.done():
            waiting.set_result(msg)

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open())
        if not self._opening.done():
            await asyncio.shield(self._opening)
        loop = asyncio.get_running_loop()
        self._next += 1
        token = str(self._next)
        answer: asyncio.Future[Msg] = loop.create_future()
        self._waiting[token] = answer
        timer = loop.call_later(PUBLISH_TIMEOUT, _time_out, answer)
        try:
            await self._nc.publish(subject, data, reply=f"{self._prefix}.{token}", headers=headers)
            reply = await answer
        finally:
            timer.cancel()
            self._waiting.pop(token, None)
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


def _time_out(answer: asyncio.Future[Msg]) -> None:
    if not answer.done():
        answer.set_exception(TimeoutError("no acknowledgement of the event"))
