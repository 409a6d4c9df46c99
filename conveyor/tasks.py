"""Task vocabulary shared by every service: types, states and proto conversions."""

from __future__ import annotations

import datetime as dt
import time

from google.protobuf import duration_pb2, timestamp_pb2

from conveyor.api.tasks.v1 import tasks_pb2

BUILTIN_TYPES = ("text_processing", "ai_summarization", "batch_processing", "image_processing")
"""The four task types of the original brief; their inputs are typed fields of TaskInput."""

CUSTOM_FIELD = "custom"

TERMINAL_STATES = frozenset(
    {tasks_pb2.TASK_STATE_COMPLETED, tasks_pb2.TASK_STATE_FAILED, tasks_pb2.TASK_STATE_CANCELLED}
)

STATE_NAMES = {
    value: name.removeprefix("TASK_STATE_").lower()
    for name, value in tasks_pb2.TaskState.items()
    if value != tasks_pb2.TASK_STATE_UNSPECIFIED
}
"""State number -> short lower-case name (pending, running, ...), for CLI and logs."""


def state_from_name(name: str) -> int:
    """The state number of a short or full state name; raises ValueError if unknown."""
    key = name.strip().upper()
    if not key.startswith("TASK_STATE_"):
        key = "TASK_STATE_" + key
    value: int = tasks_pb2.TaskState.Value(key)  # raises ValueError
    if value == tasks_pb2.TASK_STATE_UNSPECIFIED:
        raise ValueError(name)
    return value


def is_terminal(state: int) -> bool:
    """True for COMPLETED, FAILED and CANCELLED."""
    return state in TERMINAL_STATES


def input_field(message: tasks_pb2.TaskInput | tasks_pb2.SubmitTaskRequest) -> str | None:
    """The name of the oneof input field that is set, or None."""
    field = message.WhichOneof("input")
    return None if field is None else str(field)


def task_type_of(message: tasks_pb2.TaskInput | tasks_pb2.SubmitTaskRequest) -> str:
    """The task type an input names: its field name, or custom.type."""
    field = input_field(message)
    if field is None:
        return ""
    if field == CUSTOM_FIELD:
        return message.custom.type
    return field


def task_input_of(request: tasks_pb2.SubmitTaskRequest) -> tasks_pb2.TaskInput:
    """The TaskInput holding the same oneof value as a submit request."""
    result = tasks_pb2.TaskInput()
    field = input_field(request)
    if field is not None:
        getattr(result, field).CopyFrom(getattr(request, field))
    return result


def now() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


def timestamp(value: dt.datetime | None = None) -> timestamp_pb2.Timestamp:
    """A Timestamp of value (now when None; built from integers then, which costs a
    fraction of converting a datetime: it stamps every event)."""
    if value is None:
        ns = time.time_ns()
        return timestamp_pb2.Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def timestamp_micros() -> timestamp_pb2.Timestamp:
    """Now, to the microsecond as ``timestamp(now())`` (what the store keeps), built from
    integers."""
    micros = time.time_ns() // 1000
    return timestamp_pb2.Timestamp(seconds=micros // 1_000_000, nanos=micros % 1_000_000 * 1000)


def from_timestamp(ts: timestamp_pb2.Timestamp) -> dt.datetime:
    """A timezone-aware UTC datetime of a Timestamp."""
    return ts.ToDatetime(tzinfo=dt.UTC)


def duration(seconds: float) -> duration_pb2.Duration:
    """A Duration of seconds."""
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def seconds(d: duration_pb2.Duration) -> float:
    """The seconds of a Duration."""
    return float(d.ToNanoseconds()) / 1e9
