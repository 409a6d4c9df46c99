"""Publishing a task's events from the worker to the EVENTS stream."""

from __future__ import annotations

import time
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from nats.js import JetStreamContext

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

    def __init__(self, js: JetStreamContext, worker_id: str) -> None:
        self._js = js
        self.worker_id = worker_id

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
        # A rejected publish can leave its reply pending forever: bound the wait (the
        # request's own timeout, not a second wait_for task around it).
        await self._js.publish(
            subjects.event_subject(message.type),
            event.SerializeToString(),
            timeout=PUBLISH_TIMEOUT,
            headers=tracing.inject(
                {subjects.HEADER_MSG_ID: f"{message.task_id}:{attempt}:{dedupe_key}"}
            ),
        )
