"""Translations between the wire (protobuf), the state machine (dataclasses) and table rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.tasks import now
from store.transitions import Event, Kind, Progress, Snapshot, State

_KINDS = {kind.value: kind for kind in Kind}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_INT64 = 2**63 - 1


def event_from_proto(event: events_pb2.TaskEvent) -> Event | None:
    """The plain form of a stream event; None when its kind is not set (nothing to apply)."""
    field = event.WhichOneof("kind")
    if field is None:
        return None
    kind = _KINDS[field]
    time = _time(event.time) if event.HasField("time") else now()
    base: dict[str, Any] = {
        "kind": kind,
        "task_id": event.task_id,
        "time": time,
        "attempt": event.attempt,
        "worker_id": event.worker_id,
    }
    if kind is Kind.SUBMITTED:
        base["created"] = _submitted_snapshot(event, time)
    elif kind is Kind.PROGRESSED:
        p = event.progressed.progress
        # uint64 on the wire, signed BIGINT in the tables: clamp rather than fail the batch.
        base["progress"] = Progress(min(p.current, _INT64), min(p.total, _INT64), p.message)
    elif kind is Kind.RETRYING:
        base["error"] = _bytes_of(event.retrying, "error")
        base["next_attempt_time"] = _time_of(event.retrying, "next_attempt_time")
    elif kind is Kind.COMPLETED:
        base["result"] = _bytes_of(event.completed, "result")
    elif kind is Kind.FAILED:
        base["error"] = _bytes_of(event.failed, "error")
    elif kind is Kind.REDRIVEN:
        base["attempt_offset"] = event.redriven.attempt_offset
        base["run_max_attempts"] = event.redriven.max_attempts
    return Event(**base)


_OUTCOMES = frozenset({"completed", "retrying", "failed", "cancelled"})


def events_from_proto(event: events_pb2.TaskEvent) -> tuple[Event, ...]:
    """What a stream event records, in order; empty when its kind is not set.

    Usually one event. A worker leaves out the separate ``started`` event of an attempt
    that ends quickly and stamps its start on the outcome instead (``start_time``): that
    is read as the STARTED event first, then the outcome, so the start is recorded as its
    own version exactly as a separate event would have been (and ignored, like a repeated
    ``started``, when the task is already recorded running that attempt).
    """
    outcome = event_from_proto(event)
    if outcome is None:
        return ()
    if not event.HasField("start_time") or event.WhichOneof("kind") not in _OUTCOMES:
        return (outcome,)
    start = Event(
        kind=Kind.STARTED,
        task_id=event.task_id,
        time=_time(event.start_time),
        attempt=event.attempt,
        worker_id=event.worker_id,
    )
    return (start, outcome)


def _submitted_snapshot(event: events_pb2.TaskEvent, time: dt.datetime) -> Snapshot:
    task = event.submitted.task
    scheduled = task.state == tasks_pb2.TASK_STATE_SCHEDULED
    return Snapshot(
        id=event.task_id or task.id,
        type=task.type or event.type,
        state=State.SCHEDULED if scheduled else State.PENDING,
        create_time=_time_of(task, "create_time") or time,
        update_time=time,
        priority=task.priority,
        max_attempts=task.max_attempts,
        idempotency_key=task.idempotency_key,
        schedule_id=task.schedule_id,
        timeout_seconds=task.timeout.ToNanoseconds() / 1e9,
        labels=dict(task.labels),
        run_at=_time_of(task, "run_at"),
    )


def snapshot_to_task(snapshot: Snapshot) -> tasks_pb2.Task:
    """The public Task message of a snapshot."""
    s = snapshot
    task = tasks_pb2.Task(
        id=s.id,
        type=s.type,
        state=int(s.state),  # type: ignore[arg-type]  # the enum numbers are the proto's
        attempt=s.attempt,
        max_attempts=s.max_attempts,
        priority=s.priority,  # type: ignore[arg-type]
        labels=s.labels,
        idempotency_key=s.idempotency_key,
        version=s.version,
        cancel_requested=s.cancel_requested,
        schedule_id=s.schedule_id,
        worker_id=s.worker_id,
    )
    if s.result is not None:
        task.result.ParseFromString(s.result)
    if s.error is not None:
        task.error.ParseFromString(s.error)
    for blob in s.attempt_errors:
        task.attempt_errors.add().ParseFromString(blob)
    if s.progress != Progress():
        task.progress.current = s.progress.current
        task.progress.total = s.progress.total
        task.progress.message = s.progress.message
    if s.timeout_seconds:
        task.timeout.FromNanoseconds(round(s.timeout_seconds * 1e9))
    _set_time(task.create_time, s.create_time)
    _set_time(task.update_time, s.update_time)
    for name in ("start_time", "end_time", "run_at", "next_attempt_time"):
        value: dt.datetime | None = getattr(s, name)
        if value is not None:
            _set_time(getattr(task, name), value)
    return task


def _set_time(field: timestamp_pb2.Timestamp, value: dt.datetime) -> None:
    # Timestamp.FromDatetime goes through utctimetuple and calendar.timegm, which made it
    # the largest cost of converting a snapshot; plain timedelta arithmetic is exact too.
    delta = value - _EPOCH
    field.seconds = delta.days * 86_400 + delta.seconds
    field.nanos = delta.microseconds * 1_000


def snapshot_to_row(snapshot: Snapshot) -> dict[str, Any]:
    """The ``tasks`` columns a snapshot determines (everything but input and retry policy)."""
    s = snapshot
    return {
        "id": s.id,
        "type": s.type,
        "state": int(s.state),
        "priority": s.priority,
        "attempt": s.attempt,
        "max_attempts": s.max_attempts,
        "attempt_offset": s.attempt_offset,
        "version": s.version,
        "cancel_requested": s.cancel_requested,
        "idempotency_key": s.idempotency_key or None,
        "schedule_id": s.schedule_id or None,
        "worker_id": s.worker_id,
        "timeout_seconds": s.timeout_seconds,
        "result": s.result,
        "error": s.error,
        "attempt_errors": encode_errors(s.attempt_errors),
        "progress_current": s.progress.current,
        "progress_total": s.progress.total,
        "progress_message": s.progress.message,
        "create_time": s.create_time,
        "update_time": s.update_time,
        "start_time": s.start_time,
        "end_time": s.end_time,
        "run_at": s.run_at,
        "next_attempt_time": s.next_attempt_time,
        "labels": dict(s.labels),
    }


def snapshot_from_row(row: Mapping[Any, Any]) -> Snapshot:
    """The snapshot of a ``tasks`` row; a missing ``result`` column reads as no result."""
    return Snapshot(
        id=row["id"],
        type=row["type"],
        state=State(row["state"]),
        create_time=row["create_time"],
        update_time=row["update_time"],
        priority=row["priority"],
        attempt=row["attempt"],
        max_attempts=row["max_attempts"],
        attempt_offset=row["attempt_offset"],
        version=row["version"],
        cancel_requested=row["cancel_requested"],
        idempotency_key=row["idempotency_key"] or "",
        schedule_id=row["schedule_id"] or "",
        worker_id=row["worker_id"],
        timeout_seconds=row["timeout_seconds"],
        labels=row["labels"] or {},
        result=row.get("result"),
        error=row["error"],
        attempt_errors=decode_errors(row["attempt_errors"]),
        progress=Progress(row["progress_current"], row["progress_total"], row["progress_message"]),
        start_time=row["start_time"],
        end_time=row["end_time"],
        run_at=row["run_at"],
        next_attempt_time=row["next_attempt_time"],
    )


def encode_errors(errors: tuple[bytes, ...]) -> bytes:
    """Serialized TaskErrors as one value: a Task holding only ``attempt_errors``."""
    if not errors:
        return b""
    holder = tasks_pb2.Task()
    for blob in errors:
        holder.attempt_errors.add().ParseFromString(blob)
    return holder.SerializeToString()


def decode_errors(blob: bytes | None) -> tuple[bytes, ...]:
    """The serialized TaskErrors of :func:`encode_errors` output, oldest first."""
    if not blob:
        return ()
    holder = tasks_pb2.Task.FromString(blob)
    return tuple(error.SerializeToString() for error in holder.attempt_errors)


def omit_payloads(task: tasks_pb2.Task) -> tasks_pb2.Task:
    """Clears large payloads (image bytes) of the task's result in place and returns it."""
    if task.HasField("result") and task.result.HasField("image_processing"):
        task.result.image_processing.ClearField("image")
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
    # As conveyor.tasks.from_timestamp, at a third of the cost (no ToDatetime round trip):
    # every event's time goes through here.
    return _EPOCH + dt.timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1_000)
