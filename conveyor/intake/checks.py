"""The pieces every request check is made of: a collector of field violations and the
rules shared by several requests (enums, durations, labels, type names).

Each rule is written here once; ``conveyor.intake.inputs``, ``.validation``, ``.reads``
and ``.control`` combine them per request.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping

from google.protobuf import duration_pb2, timestamp_pb2

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.errors import FieldViolation, InvalidArgument
from conveyor.subjects import TASK_TYPE_PATTERN
from conveyor.tasks import CUSTOM_FIELD, input_field, task_type_of

MAX_VIOLATIONS = 100
"""Violations reported per call; past this a request is hostile or badly broken."""
MAX_LABELS = 32
LABEL_KEY_PATTERN = re.compile(r"^[a-zA-Z0-9._/-]{1,63}$")
MAX_LABEL_VALUE_CHARS = 255
TYPE_NAME_RULE = "must match [a-z][a-z0-9_]{0,63}"
"""What a task type name must look like, as a violation says it (TASK_TYPE_PATTERN)."""

_NANOS = 1_000_000_000


class Collector:
    """Gathers violations under a path prefix, up to MAX_VIOLATIONS shared by all prefixes."""

    def __init__(self, prefix: str = "", found: list[FieldViolation] | None = None) -> None:
        self.prefix = prefix
        self.found: list[FieldViolation] = [] if found is None else found

    @property
    def full(self) -> bool:
        """Whether no more violations are taken."""
        return len(self.found) >= MAX_VIOLATIONS

    def add(self, field: str, description: str) -> None:
        """Records a violation of ``field`` (a path below the prefix)."""
        if not self.full:
            self.found.append(FieldViolation(self.prefix + field, description))

    def child(self, prefix: str) -> Collector:
        """A collector for a nested message, sharing this one's violations."""
        return Collector(self.prefix + prefix, self.found)

    def raise_if_any(self) -> None:
        """Raises InvalidArgument naming every violation found."""
        if self.found:
            raise InvalidArgument.for_fields(self.found)


def _enum_names(values: Mapping[str, int], allow_zero: bool) -> str:
    return ", ".join(name for name, number in values.items() if allow_zero or number != 0)


def check_enum(
    c: Collector, field: str, values: Mapping[str, int], value: int, *, allow_zero: bool
) -> None:
    """Reports a value that is not declared (or is the forbidden zero) in its enum."""
    if value == 0 and not allow_zero:
        c.add(field, f"must be set to one of {_enum_names(values, allow_zero)}")
    elif value not in values.values():
        c.add(field, f"unknown value {value}; expected one of {_enum_names(values, allow_zero)}")


def check_at_most(c: Collector, field: str, value: float, limit: float) -> None:
    """Reports a number above its limit."""
    if value > limit:
        c.add(field, f"must be at most {limit} (got {value})")


def check_count(c: Collector, field: str, count: int, maximum: int, one: str, many: str) -> bool:
    """Reports an empty list or one past ``maximum`` (``one``: what an element is called,
    ``many``: how the maximum is said); whether the count is in range."""
    if count == 0:
        c.add(field, f"must have at least one {one}")
    elif count > maximum:
        c.add(field, f"at most {maximum} {many} (got {count})")
    else:
        return True
    return False


def check_type_name(c: Collector, field: str, name: str) -> None:
    """Reports a task type that cannot be one (it is a subject token too); "" is allowed,
    as an unset filter."""
    if name and not TASK_TYPE_PATTERN.match(name):
        c.add(field, TYPE_NAME_RULE)


def utf8_size(text: str) -> int:
    """Bytes of ``text`` in UTF-8."""
    # surrogatepass: a str built in-process may hold lone surrogates; count, never crash.
    return len(text.encode("utf-8", "surrogatepass"))


def quote(key: str) -> str:
    """A map key as it appears in a field path; long keys are cut so the path stays short."""
    return json.dumps(key[:64], ensure_ascii=False)


def duration_error(d: duration_pb2.Duration, maximum: dt.timedelta) -> str | None:
    """What is wrong with a duration that must be between 0 and ``maximum``, if anything."""
    if abs(d.nanos) >= _NANOS or (d.seconds > 0 > d.nanos) or (d.seconds < 0 < d.nanos):
        return "is not a valid duration (nanos out of range or of the wrong sign)"
    if d.seconds < 0 or d.nanos < 0:
        return "must not be negative"
    if d.ToNanoseconds() > maximum // dt.timedelta(microseconds=1) * 1000:
        return f"must be at most {maximum}"
    return None


# Timestamp's documented range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799


def timestamp_error(ts: timestamp_pb2.Timestamp) -> str | None:
    """What is wrong with a timestamp, if anything: only its documented range is valid."""
    seconds_ok = MIN_TIMESTAMP_SECONDS <= ts.seconds <= MAX_TIMESTAMP_SECONDS
    if not (seconds_ok and 0 <= ts.nanos < _NANOS):
        return "is not a valid timestamp"
    return None


def check_labels(c: Collector, field: str, labels: Mapping[str, str]) -> None:
    """Reports too many labels, malformed keys and long values."""
    if len(labels) > MAX_LABELS:
        c.add(field, f"at most {MAX_LABELS} labels (got {len(labels)})")
        return
    for key, value in labels.items():
        # The path is built only for a problem: the store checks every submitted task's.
        if not LABEL_KEY_PATTERN.match(key):
            c.add(f"{field}[{quote(key)}]", "key must match [a-zA-Z0-9._/-]{1,63}")
        if len(value) > MAX_LABEL_VALUE_CHARS:
            c.add(
                f"{field}[{quote(key)}]",
                f"value must be at most {MAX_LABEL_VALUE_CHARS} characters",
            )


def type_field(request: tasks_pb2.SubmitTaskRequest, prefix: str = "") -> str:
    """The field that names a submit request's task type: ``custom.type`` for a custom
    task, else the input's own field (the type is the field's name)."""
    field = input_field(request)
    return f"{prefix}custom.type" if field == CUSTOM_FIELD else f"{prefix}{field or 'input'}"


def unknown_type(request: tasks_pb2.SubmitTaskRequest, prefix: str = "") -> FieldViolation:
    """The violation of a submit request whose type no worker registered."""
    return FieldViolation(
        type_field(request, prefix),
        f"unknown task type {task_type_of(request)!r}: no worker has registered a handler for it",
    )
