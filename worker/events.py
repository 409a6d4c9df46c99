"""Publishing a task's events from the worker to the EVENTS stream."""

from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from conveyor import subjects, tracing
from conveyor.api.events.v1 import events_pb2
from conveyor.publish import AckedPublisher
from conveyor.tasks import timestamp

PUBLISH_TIMEOUT = 5.0


class EventPublisher:
    """Publishes TaskEvents, each with a Nats-Msg-Id so a repeated publish is dropped."""

    def __init__(self, js: JetStreamContext, worker_id: str, nc: NATS | None = None) -> None:
        self._js = js
        self.worker_id = worker_id
        self._acks = AckedPublisher(nc, PUBLISH_TIMEOUT) if nc is not None else None

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
        event = events_pb2.TaskEvent(
            task_id=message.task_id,
            type=message.type,
            time=time or timestamp(),
            attempt=attempt,
            worker_id=self.worker_id,
            start_time=start_time,
            **kind,
        )
        subject = subjects.event_subject(message.type)
        data = event.SerializeToString()
        # The run in the id as well as the attempt: a re-drive can number its attempts
        # from where the store counted, below an attempt whose late outcome the store
        # ignored, and JetStream would drop the new run's events as repeats of it.
        attempt_id = f"{run}.{attempt}" if run else str(attempt)
        headers = tracing.inject(
            {subjects.HEADER_MSG_ID: f"{message.task_id}:{attempt_id}:{dedupe_key}"}
        )
        if self._acks is not None:
            await self._acks.publish(subject, data, headers)
            return
        # A rejected publish can leave its reply pending forever: bound the wait.
        await self._js.publish(subject, data, timeout=PUBLISH_TIMEOUT, headers=headers)
