"""Translations between the wire (protobuf) and the state machine (dataclasses); table
rows are store.rows'."""

from __future__ import annotations

import datetime as dt
import operator
from typing import Any

from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.auth.principal import DEFAULT_NAMESPACE
from conveyor.payloads import abridge_input, describe, input_reference
from conveyor.tasks import now
from store.transitions import Event, Kind, Progress, Snapshot, State

_KINDS = {kind.value: kind for kind in Kind}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_INT64 = 2**63 - 1


def event_from_proto(event: events_pb2.TaskEvent) -> Event | None:
    """The plain form of a stream event; None when its kind is not set (nothing to apply)."""
    field = event.WhichOneof("kind")
    return None if field is None else _event(event, field)


def _event(event: events_pb2.TaskEvent, field: str) -> Event:
    # Positional Events, one per kind, instead of a dict of keywords: every event of a
    # batch comes through here.
    kind = _KINDS[field]
    time = _time(event.time) if event.HasField("time") else now()
    task_id, attempt, worker_id = event.task_id, event.attempt, event.worker_id
    if kind is Kind.COMPLETED:
        result = _bytes_of(event.completed, "result")
        return Event(kind, task_id, time, attempt, worker_id, result=result)
    if kind is Kind.SUBMITTED:
        created = _submitted_snapshot(event, time)
        return Event(kind, task_id, time, attempt, worker_id, created=created)
    if kind is Kind.PROGRESSED:
        p = event.progressed.progress
        # uint64 on the wire, signed BIGINT in the tables: clamp rather than fail the batch.
        progress = Progress(min(p.current, _INT64), min(p.total, _INT64), p.message)
        return Event(kind, task_id, time, attempt, worker_id, progress=progress)
    if kind is Kind.RETRYING:
        retrying = event.retrying
        error = _bytes_of(retrying, "error")
        retry_time = _time_of(retrying, "next_attempt_time")
        return Event(
            kind, task_id, time, attempt, worker_id, error=error, next_attempt_time=retry_time
        )
    if kind is Kind.FAILED:
        error = _bytes_of(event.failed, "error")
        return Event(kind, task_id, time, attempt, worker_id, error=error)
    if kind is Kind.REDRIVEN:
        redriven = event.redriven
        return Event(
            kind,
            task_id,
            time,
            attempt,
            worker_id,
            attempt_offset=redriven.attempt_offset,
            run_max_attempts=redriven.max_attempts,
        )
    return Event(kind, task_id, time, attempt, worker_id)


_OUTCOMES = frozenset({"completed", "retrying", "failed", "cancelled"})


def events_from_proto(event: events_pb2.TaskEvent) -> tuple[Event, ...]:
    """What a stream event records, in order; empty when its kind is not set.

    Usually one event. A worker leaves out the separate ``started`` event of an attempt
    that ends quickly and stamps its start on the outcome instead (``start_time``): that
    is read as the STARTED event first, then the outcome, so the start is recorded as its
    own version exactly as a separate event would have been (and ignored, like a repeated
    ``started``, when the task is already recorded running that attempt).
    """
    field = event.WhichOneof("kind")
    if field is None:
        return ()
    outcome = _event(event, field)
    if field not in _OUTCOMES or not event.HasField("start_time"):
        return (outcome,)
    start_time = _time(event.start_time)
    start = Event(Kind.STARTED, outcome.task_id, start_time, outcome.attempt, outcome.worker_id)
    return (start, outcome)


def _submitted_snapshot(event: events_pb2.TaskEvent, time: dt.datetime) -> Snapshot:
    task = event.submitted.task
    scheduled = task.state == tasks_pb2.TASK_STATE_SCHEDULED
    timeout = task.timeout
    labels = task.labels
    return Snapshot(
        id=event.task_id or task.id,
        type=task.type or event.type,
        state=State.SCHEDULED if scheduled else State.PENDING,
        create_time=_time(task.create_time) if task.HasField("create_time") else time,
        update_time=time,
        priority=task.priority,
        max_attempts=task.max_attempts,
        idempotency_key=task.idempotency_key,
        schedule_id=task.schedule_id,
        # Duration.ToNanoseconds(), without its method call
        timeout_seconds=(timeout.seconds * 1_000_000_000 + timeout.nanos) / 1e9,
        labels={key: labels[key] for key in labels},  # cheaper than dict(labels) on a map field
        run_at=_time(task.run_at) if task.HasField("run_at") else None,
        # A gateway from before namespaces sends none: its tasks are the default's.
        namespace=task.namespace or DEFAULT_NAMESPACE,
        trace_id=task.trace_id,
    )


def snapshot_to_task(snapshot: Snapshot) -> tasks_pb2.Task:
    """The public Task message of a snapshot."""
    task = _fixed_task(snapshot)
    task.MergeFrom(_changing_task(snapshot))
    return task


class TaskBuilder:
    """Builds the Task messages of snapshots, as :func:`snapshot_to_task`, and their
    serialized form, making the part fixed at submit (id, type, labels, create time ...)
    once per task rather than once per version: labels cost more to set than the rest of
    a Task together.

    >>> builder = TaskBuilder()
    >>> task, data = builder.task(snapshot)  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._fixed: dict[str, tuple[tuple[Any, ...], bytes]] = {}

    def task(self, snapshot: Snapshot) -> tuple[tasks_pb2.Task, bytes]:
        """The public Task message of ``snapshot`` and its bytes (a serialized Task).

        The bytes are the fixed part's followed by the changing part's: the two set
        disjoint fields, and protobuf reads concatenated messages as one holding the
        fields of both. Parsing them makes the Task at less cost than merging the parts'
        messages and serializing the result (which the history row needs anyway)."""
        key = _FIXED(snapshot)
        found = self._fixed.get(snapshot.id)
        # Transitions copy these values unchanged, so the comparison is mostly identity
        # checks; it still holds if a later change of the state machine altered one.
        if found is None or found[0] != key:
            found = self._fixed[snapshot.id] = (key, _fixed_task(snapshot).SerializeToString())
        data = found[1] + _changing_task(snapshot).SerializeToString()
        return tasks_pb2.Task.FromString(data), data


_FIXED_FIELDS = (
    "id",
    "type",
    "priority",
    "labels",
    "idempotency_key",
    "schedule_id",
    "timeout_seconds",
    "create_time",
    "run_at",
    "namespace",
    "trace_id",
)
_FIXED = operator.attrgetter(*_FIXED_FIELDS)


def _fixed_task(s: Snapshot) -> tasks_pb2.Task:
    """A Task holding only the snapshot's fields that no transition changes."""
    task = tasks_pb2.Task(
        id=s.id,
        type=s.type,
        priority=s.priority,  # type: ignore[arg-type]
        idempotency_key=s.idempotency_key,
        schedule_id=s.schedule_id,
        namespace=s.namespace,
        trace_id=s.trace_id,
    )
    labels = task.labels
    for key, value in s.labels.items():  # cheaper than Task(labels=...)'s update()
        labels[key] = value
    if s.timeout_seconds:
        task.timeout.FromNanoseconds(round(s.timeout_seconds * 1e9))
    _set_time(task.create_time, s.create_time)
    if s.run_at is not None:
        _set_time(task.run_at, s.run_at)
    return task


def _changing_task(s: Snapshot) -> tasks_pb2.Task:
    """A Task holding only the snapshot's fields that transitions may change."""
    task = tasks_pb2.Task(
        state=int(s.state),  # type: ignore[arg-type]  # the enum numbers are the proto's
        attempt=s.attempt,
        max_attempts=s.max_attempts,
        version=s.version,
        cancel_requested=s.cancel_requested,
        worker_id=s.worker_id,
    )
    if s.result is not None:
        task.result.ParseFromString(s.result)
    if s.error is not None:
        task.error.ParseFromString(s.error)
    for blob in s.attempt_errors:
        task.attempt_errors.add().ParseFromString(blob)
    progress = s.progress
    if progress.current or progress.total or progress.message:
        task.progress.current = progress.current
        task.progress.total = progress.total
        task.progress.message = progress.message
    _set_time(task.update_time, s.update_time)
    if s.start_time is not None:
        _set_time(task.start_time, s.start_time)
    if s.end_time is not None:
        _set_time(task.end_time, s.end_time)
    if s.next_attempt_time is not None:
        _set_time(task.next_attempt_time, s.next_attempt_time)
    return task


def _set_time(field: timestamp_pb2.Timestamp, value: dt.datetime) -> None:
    # Timestamp.FromDatetime goes through utctimetuple and calendar.timegm, which made it
    # the largest cost of converting a snapshot; plain timedelta arithmetic is exact too.
    delta = value - _EPOCH
    field.seconds = delta.days * 86_400 + delta.seconds
    field.nanos = delta.microseconds * 1_000


def omit_payloads(task: tasks_pb2.Task) -> tasks_pb2.Task:
    """Clears large payloads (image bytes) of the task's result and input in place,
    marking each abridged (``result.payload``: GetTaskPayload has it all; ``input.payload``
    describes the input), and returns it."""
    if task.HasField("input") and task.input.image_processing.image:
        task.input.CopyFrom(abridge_input(task.input, input_reference(task.input)))
    result = task.result
    if task.HasField("result") and result.image_processing.image:
        if not result.HasField("payload"):
            result.payload.CopyFrom(describe(result.SerializeToString()))
        result.image_processing.ClearField("image")
    return task


def _bytes_of(message: Message, name: str) -> bytes | None:
    if not message.HasField(name):
        return None
    value: Message = getattr(message, name)
    return value.SerializeToString()


def _time_of(message: Message, name: str) -> dt.datetime | None:
    if not message.HasField(name):
        return None
    return _time(getattr(message, name))


def _time(ts: timestamp_pb2.Timestamp) -> dt.datetime:
    # As conveyor.tasks.from_timestamp, at a fifth of the cost (no ToDatetime round trip,
    # positional timedelta): every event's time goes through here.
    return _EPOCH + _timedelta(0, ts.seconds, ts.nanos // 1_000)


_timedelta = dt.timedelta
