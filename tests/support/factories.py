"""Builders of realistic TaskEvents and an in-memory stand-in for EVENTS stream sequences."""

from __future__ import annotations

import datetime as dt
import itertools

from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.ids import new_task_id
from conveyor.tasks import duration, timestamp

T0 = dt.datetime(2026, 3, 1, 9, 30, 0, 123456, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    """T0 plus ``seconds``."""
    return T0 + dt.timedelta(seconds=seconds)


def submitted(
    task_id: str | None = None,
    *,
    task_type: str = "text_processing",
    created: dt.datetime = T0,
    labels: dict[str, str] | None = None,
    max_attempts: int = 3,
    scheduled: bool = False,
    image: bytes = b"",
) -> events_pb2.TaskEvent:
    """A submit as the gateway publishes it."""
    task_id = task_id or new_task_id(int(created.timestamp() * 1000))
    task_input = tasks_pb2.TaskInput()
    if task_type == "image_processing":
        task_input.image_processing.image = image
    else:
        task_input.text_processing.text = "Hello, world."
    task = tasks_pb2.Task(
        id=task_id,
        type=task_type,
        state=tasks_pb2.TASK_STATE_SCHEDULED if scheduled else tasks_pb2.TASK_STATE_PENDING,
        max_attempts=max_attempts,
        priority=tasks_pb2.TASK_PRIORITY_NORMAL,
        labels=labels or {},
        idempotency_key=f"key-{task_id}",
        timeout=duration(30),
        create_time=timestamp(created),
    )
    if scheduled:
        task.run_at.FromDatetime(created + dt.timedelta(hours=1))
    return events_pb2.TaskEvent(
        task_id=task_id,
        type=task_type,
        time=timestamp(created),
        submitted=events_pb2.Submitted(
            task=task,
            input=task_input,
            retry_policy=events_pb2.RetryPolicy(
                initial_delay=duration(1), max_delay=duration(60), multiplier=2.0
            ),
        ),
    )


def worker_event(
    task_id: str,
    when: dt.datetime,
    attempt: int,
    worker: str = "worker-1",
    task_type: str = "text_processing",
    **kind: object,
) -> events_pb2.TaskEvent:
    """An event of one attempt, such as ``started=events_pb2.Started()``."""
    return events_pb2.TaskEvent(
        task_id=task_id,
        type=task_type,
        time=timestamp(when),
        attempt=attempt,
        worker_id=worker,
        **kind,  # type: ignore[arg-type]
    )


def error(attempt: int, message: str, when: dt.datetime) -> tasks_pb2.TaskError:
    """A failed attempt's error."""
    return tasks_pb2.TaskError(
        attempt=attempt, type="ValueError", message=message, time=timestamp(when)
    )


def text_result(words: int) -> tasks_pb2.TaskResult:
    """A text_processing result."""
    return tasks_pb2.TaskResult(text_processing=tasks_pb2.TextProcessingResult(words=words))


class Stream:
    """Numbers events as the EVENTS stream would, in publish order."""

    def __init__(self) -> None:
        self._sequence = itertools.count(1)

    def number(self, *events: events_pb2.TaskEvent) -> list[tuple[int, events_pb2.TaskEvent]]:
        """The events with the next stream sequences."""
        return [(next(self._sequence), event) for event in events]

    def batch(self, *events: events_pb2.TaskEvent) -> list[tuple[int, events_pb2.TaskEvent]]:
        """The events of one message holding them all (a ``TaskEvents`` batch): each at
        the message's one sequence, in order."""
        sequence = next(self._sequence)
        return [(sequence, event) for event in events]
