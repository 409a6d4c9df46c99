"""Every message a service puts on JetStream: its constructor, its ``Nats-Msg-Id`` and the
one publisher that sends it.

JetStream drops a message whose ``Nats-Msg-Id`` it stored within the dedupe window, so a
publish retried after a lost acknowledgement is stored once. Each id therefore names what
makes its message unique, no more (a repeat must be dropped) and no less (a new message
must not be); docs/architecture.md ("Message ids") has the whole scheme in one table.

Every publish goes through :func:`publisher` (``conveyor.publish.AckedPublisher``): one
reply subscription per publisher, each wait bounded by ``PUBLISH_TIMEOUT``, and the
trace context in the headers of every message (in each event of a ``TaskEvents`` batch,
whose events belong to many traces).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from conveyor import subjects, tracing
from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.publish import AckedPublisher
from conveyor.tasks import timestamp

PUBLISH_TIMEOUT = 5.0
"""Seconds a publish waits for its acknowledgement: a rejected publish can leave its
reply pending forever."""
SCHEDULER_ID = "scheduler"
"""The worker id of events the scheduler publishes for a task no worker holds."""
MAX_BATCH_EVENTS = 1024
"""The most events a service puts in one ``TaskEvents`` message."""
MAX_BATCH_BYTES = 1024 * 1024
"""The largest ``TaskEvents`` message a service makes, bounded further to half the
connection's ``max_payload``."""
LOST_ERROR = "lost"
"""The error type of the ``failed`` event of a task that no stream holds."""

Message = tuple[str, bytes, dict[str, str]]
"""A message to publish: subject, data, headers."""


def publisher(
    js: JetStreamContext, nc: NATS | None = None, timeout: float = PUBLISH_TIMEOUT
) -> AckedPublisher:
    """The publisher of a service, on ``nc`` or else on the connection ``js`` uses."""
    # nats-py keeps a context's connection only as _nc; the scheduler has only the context.
    return AckedPublisher(nc if nc is not None else js._nc, timeout)


def headers(msg_id: str) -> dict[str, str]:
    """A message's headers: its id and the current trace context."""
    return tracing.inject({subjects.HEADER_MSG_ID: msg_id})


# --- message ids (docs/architecture.md, "Message ids") -----------------------------------


def redrive_of(task: tasks_pb2.Task) -> str:
    """What names one re-drive of ``task``: the attempts so far and its version. The offset
    alone does not (a task cancelled before it started is re-driven at offset 0 every
    time, and its first run was published as run 0); each re-drive bumps the version."""
    return f"{task.attempt}.{task.version}"


def run_id(task_id: str, redrive: str = "0") -> str:
    """The id of a task message on TASKS: its first run, or a re-drive (``redrive_of``)."""
    return f"{task_id}:run:{redrive}"


def task_event_id(task_id: str, key: str) -> str:
    """The id of an event not published by a worker: ``submitted``, ``cancel:<version>``,
    ``redrive:<redrive>``, ``lost:<version>``."""
    return f"{task_id}:{key}"


def worker_batch_id(publisher_id: str, number: int) -> str:
    """The id of a worker's message of events (``event_batch``): its publisher's id, made
    once per publisher (``<worker id>:<random nonce>``, unique across restarts and across
    workers configured with the same id), and the message's number from that publisher. A
    retried batch keeps its id; the events in it need none of their own."""
    return f"{publisher_id}:{number}"


# --- constructors -------------------------------------------------------------------------


def worker_event(
    message: events_pb2.TaskMessage,
    attempt: int,
    worker_id: str,
    time: Timestamp | None = None,
    start_time: Timestamp | None = None,
    **kind: Any,
) -> events_pb2.TaskEvent:
    """An event of an attempt at the task of ``message``, from a worker, as it goes in an
    ``event_batch``: with the trace context of the attempt when its trace is sampled."""
    # Built here rather than by event(): this runs for every event of every task.
    return events_pb2.TaskEvent(
        task_id=message.task_id,
        type=message.type,
        time=time if time is not None else timestamp(),
        attempt=attempt,
        worker_id=worker_id,
        start_time=start_time,
        traceparent=tracing.sampled_traceparent(),
        **kind,
    )


def event_batch(
    publisher: str, task_type: str, msg_id: str, events: Sequence[events_pb2.TaskEvent]
) -> Message:
    """Several events of tasks of one type, in order, as one EVENTS message of
    ``publisher``: one stored message, one acknowledgement and one ``Nats-Msg-Id`` for all
    of them. A publish retried after a lost acknowledgement must repeat the same events
    under the same id, so a batch is fixed before its first publish."""
    data = events_pb2.TaskEvents(events=events).SerializeToString()
    batch_headers = {
        subjects.HEADER_MSG_ID: msg_id,
        subjects.HEADER_EVENT_COUNT: str(len(events)),
    }
    return subjects.event_subject(publisher, task_type), data, batch_headers


def events_of(headers: Mapping[str, str] | None, data: bytes) -> list[events_pb2.TaskEvent]:
    """The events an EVENTS message holds: one, or a batch (``event_batch``); raises
    ``DecodeError`` on bytes that are neither, or a batch whose count is not its header's."""
    count = headers.get(subjects.HEADER_EVENT_COUNT) if headers else None
    if count is None:
        return [events_pb2.TaskEvent.FromString(data)]
    events = list(events_pb2.TaskEvents.FromString(data).events)
    if count != str(len(events)):  # as event_batch writes it; no int() of hostile text
        raise DecodeError(f"a batch of {len(events)} events says it holds {count[:32]!r}")
    return events


def task_message(
    task: tasks_pb2.Task,
    task_input: tasks_pb2.TaskInput,
    retry_policy: events_pb2.RetryPolicy,
    max_attempts: int,
    attempt_offset: int = 0,
) -> events_pb2.TaskMessage:
    """The message a worker runs: everything about the task it needs, in one message."""
    return events_pb2.TaskMessage(
        task_id=task.id,
        type=task.type,
        input=task_input,
        max_attempts=max_attempts,
        timeout=task.timeout,
        attempt_offset=attempt_offset,
        retry_policy=retry_policy,
        priority=task.priority,
        create_time=task.create_time,
    )


def event(
    task_id: str, task_type: str, time: Timestamp | None = None, **kind: Any
) -> events_pb2.TaskEvent:
    """A task event of kind ``kind`` (e.g. ``redriven=Redriven(...)``), at ``time``
    (default: now)."""
    when = time if time is not None else timestamp()
    return events_pb2.TaskEvent(task_id=task_id, type=task_type, time=when, **kind)


def event_message(
    publisher: str, task_type: str, msg_id: str, task_event: events_pb2.TaskEvent
) -> Message:
    """An event as the message ``publisher`` (a ``subjects.PUBLISHERS`` role) puts on EVENTS."""
    subject = subjects.event_subject(publisher, task_type)
    return subject, task_event.SerializeToString(), headers(msg_id)


def submitted_event(
    task: tasks_pb2.Task, message: events_pb2.TaskMessage, retry_policy: events_pb2.RetryPolicy
) -> events_pb2.TaskEvent:
    """The ``submitted`` event of a task: the whole task, for the store."""
    # Built here rather than by event(): this runs for every submitted task.
    return events_pb2.TaskEvent(
        task_id=task.id,
        type=task.type,
        time=task.create_time,
        submitted=events_pb2.Submitted(task=task, input=message.input, retry_policy=retry_policy),
    )


def queued_message(task: tasks_pb2.Task, message: events_pb2.TaskMessage) -> Message:
    """The task itself on TASKS, for a worker; a message schedule for a delayed task."""
    target = subjects.task_subject(task.type, task.priority, task.id)
    task_headers = headers(run_id(task.id))
    subject = target
    if task.HasField("run_at"):
        subject = subjects.delayed_subject(task.id)
        task_headers.update(subjects.schedule_headers(task.run_at.ToDatetime(dt.UTC), target))
    return subject, message.SerializeToString(), task_headers


def submitted_message(publisher: str, event: events_pb2.TaskEvent) -> Message:
    """A ``submitted`` event alone in its EVENTS message, as a lone submit sends it."""
    msg_id = task_event_id(event.task_id, "submitted")
    return event_message(publisher, event.type, msg_id, event)


def submitted_batches(
    publisher: str, events: Sequence[events_pb2.TaskEvent], max_bytes: int
) -> list[tuple[Message, list[int]]]:
    """The ``submitted`` events of several tasks as few EVENTS messages, each with the
    indices of the events it carries: a batch per task type of at most ``max_bytes`` (an
    event larger than that goes alone, as a lone submit does). A batch's id hashes its
    tasks' ids, so a submit retried with the same tasks repeats it exactly and JetStream
    drops the repeat."""
    packed: list[tuple[Message, list[int]]] = []
    for indices in pack_events(events, max_bytes):
        if len(indices) == 1:
            packed.append((submitted_message(publisher, events[indices[0]]), indices))
            continue
        batch = [events[i] for i in indices]
        digest = hashlib.sha256("".join(e.task_id for e in batch).encode()).hexdigest()
        msg_id = f"submitted:{len(batch)}:{digest[:32]}"
        packed.append((event_batch(publisher, batch[0].type, msg_id, batch), indices))
    return packed


def pack_events(
    events: Sequence[events_pb2.TaskEvent], max_bytes: int, max_events: int = MAX_BATCH_EVENTS
) -> list[list[int]]:
    """How to put ``events`` in few EVENTS messages: groups of indices, in order, each of
    one task type (a subject names one type) and at most ``max_bytes`` and ``max_events``
    (an event larger than ``max_bytes`` is a group of its own)."""
    by_type: dict[str, list[int]] = {}
    for index, task_event in enumerate(events):
        by_type.setdefault(task_event.type, []).append(index)
    groups: list[list[int]] = []
    for indices in by_type.values():
        group: list[int] = []
        size = 0
        for index in indices:
            # Each event is a length-delimited field of TaskEvents: its bytes and a few more.
            event_size = events[index].ByteSize() + 6
            if group and (size + event_size > max_bytes or len(group) >= max_events):
                groups.append(group)
                group, size = [], 0
            group.append(index)
            size += event_size
        groups.append(group)
    return groups


def cancel_requested(task: tasks_pb2.Task) -> Message:
    """The ``cancel_requested`` event of a cancel: one per version of the task."""
    cancel = event(task.id, task.type, cancel_requested=events_pb2.CancelRequested())
    msg_id = task_event_id(task.id, f"cancel:{task.version}")
    return event_message(subjects.STORE, task.type, msg_id, cancel)


def redriven(task: tasks_pb2.Task, max_attempts: int) -> Message:
    """The ``redriven`` event of a re-drive of ``task``, counting on from its attempts."""
    redrive = events_pb2.Redriven(attempt_offset=task.attempt, max_attempts=max_attempts)
    again = event(task.id, task.type, redriven=redrive)
    msg_id = task_event_id(task.id, f"redrive:{redrive_of(task)}")
    return event_message(subjects.STORE, task.type, msg_id, again)


def rerun_message(task: tasks_pb2.Task, message: events_pb2.TaskMessage) -> Message:
    """A re-driven task's message on TASKS."""
    subject = subjects.task_subject(task.type, task.priority, task.id)
    return subject, message.SerializeToString(), headers(run_id(task.id, redrive_of(task)))


def lost(task: tasks_pb2.Task, message: str) -> Message:
    """The ``failed`` event of a task that no stream holds (error type ``lost``), from the
    scheduler: one per version of the task it looked at."""
    error = tasks_pb2.TaskError(
        attempt=task.attempt, type=LOST_ERROR, message=message, time=timestamp()
    )
    failed = event(
        task.id,
        task.type,
        attempt=max(task.attempt, 1),
        worker_id=SCHEDULER_ID,
        failed=events_pb2.Failed(error=error),
    )
    msg_id = task_event_id(task.id, f"lost:{task.version}")
    return event_message(subjects.SCHEDULER, task.type, msg_id, failed)
