"""Publishing a task's events from the worker to the EVENTS stream."""

from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from conveyor import messages
from conveyor.api.events.v1 import events_pb2


class EventPublisher:
    """Publishes TaskEvents, each with a Nats-Msg-Id so a repeated publish is dropped."""

    def __init__(self, js: JetStreamContext, worker_id: str, nc: NATS | None = None) -> None:
        self.worker_id = worker_id
        self._acks = messages.publisher(js, nc)

    async def publish(
        self,
        message: events_pb2.TaskMessage,
        attempt: int,
        dedupe_key: str,
        *,
        time: Timestamp | None = None,
        start_time: Timestamp | None = None,
        run: int = 0,
        **kind: Any,
    ) -> None:
        """Publishes one event of kind ``kind`` (e.g. ``started=Started()``) and waits for
        the stream's acknowledgement.

        ``time`` is when it happened (default: now); ``start_time``, on an outcome, is the
        start of an attempt whose ``started`` event was not published; ``run``, the TASKS
        stream sequence of the task's message, tells apart the runs of a re-driven task."""
        await self._acks.publish(
            *messages.worker_event(
                message, attempt, self.worker_id, dedupe_key, run, time, start_time, **kind
            )
        )
