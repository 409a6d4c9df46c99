"""Rows of the ``tasks`` table: its columns, and the conversions between a row and a
snapshot or a Task message, in the shapes the drivers take and give.

The write path and the reads convert rows here, once, without SQLAlchemy's per-value
processing, which was the largest cost of both (see store.db).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from typing import Any

from conveyor.api.tasks.v1 import tasks_pb2
from store.models import UTCDateTime, tasks
from store.transitions import Progress, Snapshot, State

TIME_COLUMNS = tuple(c.name for c in tasks.c if isinstance(c.type, UTCDateTime))
"""The ``tasks`` columns holding times, which the driver-level reads and writes convert."""
_EPOCH_NAIVE = dt.datetime(1970, 1, 1)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# Columns a transition may change. The rest (type, labels, create_time ...) are fixed at
# submit, so updates leave them out and write less.
MUTABLE = (
    "state",
    "attempt",
    "max_attempts",
    "attempt_offset",
    "version",
    "cancel_requested",
    "worker_id",
    "result",
    "error",
    "attempt_errors",
    "progress_current",
    "progress_total",
    "progress_message",
    "update_time",
    "start_time",
    "end_time",
    "next_attempt_time",
)
# Everything but the immutable input, which only submit and re-drive need.
SNAPSHOT_COLUMNS = [c for c in tasks.c if c.name not in ("input", "retry_policy")]
# Listed tasks leave out results too, which can be megabytes of image.
LISTED_COLUMNS = [c for c in SNAPSHOT_COLUMNS if c.name != "result"]
SNAPSHOT_NAMES = tuple(c.name for c in SNAPSHOT_COLUMNS)
LISTED_NAMES = tuple(c.name for c in LISTED_COLUMNS)


def snapshot_to_row(snapshot: Snapshot) -> dict[str, Any]:
    """The ``tasks`` columns a snapshot determines (everything but input and retry policy)."""
    row = dict(zip(INSERT_KEYS, insert_row(snapshot, b"", b"", aware), strict=True))
    del row["input"], row["retry_policy"]
    row["labels"] = dict(snapshot.labels)
    return row


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
        namespace=row["namespace"],
        trace_id=row["trace_id"],
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


ToTime = Callable[[dt.datetime | None], Any]


def insert_row(s: Snapshot, task_input: bytes, policy: bytes, to_time: ToTime) -> tuple[Any, ...]:
    """The values of a new ``tasks`` row in ``INSERT_KEYS`` order, as the driver takes
    them: snapshot_to_row's values, without a dict per row."""
    return (
        s.id,
        s.type,
        int(s.state),
        s.priority,
        s.attempt,
        s.max_attempts,
        s.attempt_offset,
        s.version,
        s.cancel_requested,
        s.idempotency_key or None,
        s.schedule_id or None,
        s.worker_id,
        s.timeout_seconds,
        task_input,
        policy,
        s.result,
        s.error,
        encode_errors(s.attempt_errors),
        s.progress.current,
        s.progress.total,
        s.progress.message,
        to_time(s.create_time),
        to_time(s.update_time),
        to_time(s.start_time),
        to_time(s.end_time),
        to_time(s.run_at),
        to_time(s.next_attempt_time),
        json.dumps(dict(s.labels)),
        s.namespace,
        s.trace_id,
    )


def update_row(s: Snapshot, to_time: ToTime) -> tuple[Any, ...]:
    """The values of an update of the ``MUTABLE`` columns, in ``UPDATE_KEYS`` order."""
    return (
        int(s.state),
        s.attempt,
        s.max_attempts,
        s.attempt_offset,
        s.version,
        s.cancel_requested,
        s.worker_id,
        s.result,
        s.error,
        encode_errors(s.attempt_errors),
        s.progress.current,
        s.progress.total,
        s.progress.message,
        to_time(s.update_time),
        to_time(s.start_time),
        to_time(s.end_time),
        to_time(s.next_attempt_time),
        s.id,
    )


INSERT_KEYS = tuple(c.name for c in tasks.c)
UPDATE_KEYS = (*MUTABLE, "b_id")
# insert_row and update_row spell these orders out; a column added to the table must be
# added there too, which this check says at import rather than as wrong values written.
_ROW_ORDERS = (
    "id", "type", "state", "priority", "attempt", "max_attempts", "attempt_offset", "version",
    "cancel_requested", "idempotency_key", "schedule_id", "worker_id", "timeout_seconds",
    "input", "retry_policy", "result", "error", "attempt_errors", "progress_current",
    "progress_total", "progress_message", "create_time", "update_time", "start_time",
    "end_time", "run_at", "next_attempt_time", "labels", "namespace",
    "trace_id",
), (
    "state", "attempt", "max_attempts", "attempt_offset", "version", "cancel_requested",
    "worker_id", "result", "error", "attempt_errors", "progress_current", "progress_total",
    "progress_message", "update_time", "start_time", "end_time", "next_attempt_time", "b_id",
)  # fmt: skip
if (INSERT_KEYS, UPDATE_KEYS) != _ROW_ORDERS:
    raise RuntimeError("store.rows: insert_row/update_row out of step with the table")


def snapshot_from_sqlite(raw: Sequence[Any]) -> Snapshot:
    """The snapshot of a ``tasks`` row of ``SNAPSHOT_NAMES`` as sqlite3 returns it, with
    the values SQLAlchemy's column types would give (aware UTC times from the stored text,
    labels from JSON, booleans): as snapshot_from_row, by position, without a dict per row
    (the write path loads every task a batch touches)."""
    (
        task_id, task_type, state, priority, attempt, max_attempts, attempt_offset, version,
        cancel_requested, idempotency_key, schedule_id, worker_id, timeout_seconds, result,
        error, attempt_errors, progress_current, progress_total, progress_message,
        create_time, update_time, start_time, end_time, run_at, next_attempt_time, labels,
        namespace, trace_id,
    ) = raw  # fmt: skip
    if progress_current or progress_total or progress_message:
        progress = Progress(progress_current, progress_total, progress_message)
    else:
        progress = _NO_PROGRESS
    return Snapshot(
        task_id,
        task_type,
        State(state),
        _from_text_utc(create_time),
        _from_text_utc(update_time),
        priority,
        attempt,
        max_attempts,
        attempt_offset,
        version,
        bool(cancel_requested),
        idempotency_key or "",
        schedule_id or "",
        worker_id,
        timeout_seconds,
        json.loads(labels) if labels else {},
        result,
        error,
        decode_errors(attempt_errors),
        progress,
        _from_text(start_time),
        _from_text(end_time),
        _from_text(run_at),
        _from_text(next_attempt_time),
        namespace,
        trace_id,
    )


_NO_PROGRESS = Progress()
# snapshot_from_sqlite unpacks rows in this order and builds snapshots by position: both
# are checked at import rather than found as values in the wrong fields.
_SQLITE_ROW = (
    "id", "type", "state", "priority", "attempt", "max_attempts", "attempt_offset", "version",
    "cancel_requested", "idempotency_key", "schedule_id", "worker_id", "timeout_seconds",
    "result", "error", "attempt_errors", "progress_current", "progress_total",
    "progress_message", "create_time", "update_time", "start_time", "end_time", "run_at",
    "next_attempt_time", "labels", "namespace", "trace_id",
)  # fmt: skip
_SNAPSHOT_ORDER = (
    "id", "type", "state", "create_time", "update_time", "priority", "attempt",
    "max_attempts", "attempt_offset", "version", "cancel_requested", "idempotency_key",
    "schedule_id", "worker_id", "timeout_seconds", "labels", "result", "error",
    "attempt_errors", "progress", "start_time", "end_time", "run_at", "next_attempt_time",
    "namespace", "trace_id",
)  # fmt: skip
if SNAPSHOT_NAMES != _SQLITE_ROW or tuple(f.name for f in fields(Snapshot)) != _SNAPSHOT_ORDER:
    raise RuntimeError("store.rows: snapshot_from_sqlite out of step with the table or Snapshot")


def _from_text_utc(text: str) -> dt.datetime:
    # The stored text is naive UTC: parsed with the offset appended, at a seventh of the
    # cost of parsing it and replace(tzinfo=UTC).
    return dt.datetime.fromisoformat(text + "+00:00")


def _from_text(text: str | None) -> dt.datetime | None:
    return None if text is None else _from_text_utc(text)


def sqlite_text(value: dt.datetime | None) -> str | None:
    """A time as SQLAlchemy's SQLite DateTime stores it: naive UTC text, microseconds
    always written, so that stored times compare correctly as text."""
    if value is None:
        return None
    if value.tzinfo is not dt.UTC:
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store times must be timezone-aware")
        value = value.astimezone(dt.UTC)
    # "YYYY-MM-DD HH:MM:SS.ffffff+00:00" without the offset; cheaper than formatting the
    # fields one by one
    return value.isoformat(" ", "microseconds")[:26]


def aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: store times must be timezone-aware")
    return value


def sqlite_time(value: Any) -> dt.datetime | None:
    """A stored SQLite time as an aware UTC datetime."""
    if value is None:
        return None
    return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)


def _set_time(field: Any, value: dt.datetime) -> None:
    """Sets a Timestamp from an aware datetime, or a naive one in UTC (SQLite's text)."""
    delta = value - (_EPOCH_NAIVE if value.tzinfo is None else _EPOCH)
    field.seconds = delta.days * 86_400 + delta.seconds
    field.nanos = delta.microseconds * 1_000


def task_of(row: Sequence[Any], names: Sequence[str], raw: bool) -> tasks_pb2.Task:
    """The Task of a ``tasks`` row, as store.convert.snapshot_to_task(snapshot_from_row(row)).

    ``raw``: straight from sqlite3 (times as text, labels as JSON text, booleans as 0/1).
    """
    r = dict(zip(names, row, strict=True))
    labels = r["labels"]
    if raw:
        labels = json.loads(labels) if labels else {}
        times = {
            name: None if r[name] is None else dt.datetime.fromisoformat(r[name])
            for name in TIME_COLUMNS
        }
    else:
        times = {name: r[name] for name in TIME_COLUMNS}
    task = tasks_pb2.Task(
        id=r["id"],
        type=r["type"],
        state=r["state"],
        attempt=r["attempt"],
        max_attempts=r["max_attempts"],
        priority=r["priority"],
        labels=labels or {},
        idempotency_key=r["idempotency_key"] or "",
        version=r["version"],
        cancel_requested=bool(r["cancel_requested"]),
        schedule_id=r["schedule_id"] or "",
        worker_id=r["worker_id"],
        namespace=r["namespace"],
        trace_id=r["trace_id"],
    )
    result = r.get("result")
    if result is not None:
        task.result.ParseFromString(result)
    if r["error"] is not None:
        task.error.ParseFromString(r["error"])
    if r["attempt_errors"]:
        # A serialized Task holding only attempt_errors: merging appends them in order.
        task.MergeFromString(r["attempt_errors"])
    current, total, message = r["progress_current"], r["progress_total"], r["progress_message"]
    if current or total or message:
        task.progress.current = current
        task.progress.total = total
        task.progress.message = message
    if r["timeout_seconds"]:
        task.timeout.FromNanoseconds(round(r["timeout_seconds"] * 1e9))
    for name, value in times.items():
        if value is not None:
            _set_time(getattr(task, name), value)
    return task
