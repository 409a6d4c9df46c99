"""Validation of submit requests: the one place that decides what a well-formed task is.

Every check reports a :class:`~conveyor.errors.FieldViolation` naming the offending field
by its path in the request (``text_processing.text``, ``options.labels["k"]``,
``requests[3].image_processing.image``) and keeps going, so a client learns about every
problem in one round trip. The server turns the raised
:class:`~conveyor.errors.InvalidArgument` into ``INVALID_ARGUMENT`` with
``google.rpc.BadRequest`` details.

Nothing here trusts the generated types: proto3 keeps enum numbers it does not know, so
enums are checked against their declared values, and doubles may be NaN. The inputs are
checked in ``conveyor.intake.inputs``, the shared rules live in ``conveyor.intake.checks``.

>>> from conveyor.api.tasks.v1 import tasks_pb2
>>> from conveyor.config import Limits
>>> from conveyor.errors import InvalidArgument
>>> request = tasks_pb2.SubmitTaskRequest(text_processing={"text": ""})
>>> try:
...     validate_submit(request, Limits())
... except InvalidArgument as exc:
...     print([v.field for v in exc.violations])
['text_processing.text']
"""

from __future__ import annotations

import datetime as dt

from google.protobuf import timestamp_pb2

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.config import Limits
from conveyor.intake.checks import (
    Collector,
    check_at_most,
    check_count,
    check_enum,
    check_labels,
    duration_error,
    timestamp_error,
)
from conveyor.intake.inputs import check_input
from conveyor.intake.unknown import unknown_fields_of

MAX_ATTEMPTS = 100
MAX_TIMEOUT = dt.timedelta(hours=24)
MAX_DELAY = dt.timedelta(days=365)
MAX_IDEMPOTENCY_KEY_CHARS = 200

_PRIORITIES: dict[str, int] = dict(tasks_pb2.TaskPriority.items())


def check_options(c: Collector, msg: tasks_pb2.TaskOptions, now: dt.datetime) -> None:
    """Reports every invalid option."""
    check_task_options(c, msg)
    if msg.HasField("delay"):
        if msg.HasField("run_at"):
            c.add("delay", "set either delay or run_at, not both")
        elif problem := duration_error(msg.delay, MAX_DELAY):
            c.add("delay", problem)
    if msg.HasField("run_at"):
        _check_run_at(c, msg.run_at, now)


def check_task_options(c: Collector, msg: tasks_pb2.TaskOptions | tasks_pb2.Task) -> None:
    """Reports every invalid option but the delay and the time to run: those of a submit's
    options, or of a submitted task (the store checks every ``submitted`` task's)."""
    check_at_most(c, "max_attempts", msg.max_attempts, MAX_ATTEMPTS)
    if msg.HasField("timeout") and (problem := duration_error(msg.timeout, MAX_TIMEOUT)):
        c.add("timeout", problem)
    check_enum(c, "priority", _PRIORITIES, msg.priority, allow_zero=True)
    key = msg.idempotency_key
    if len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        c.add("idempotency_key", f"must be at most {MAX_IDEMPOTENCY_KEY_CHARS} characters")
    elif not key.isprintable():
        c.add("idempotency_key", "must contain printable characters only")
    check_labels(c, "labels", msg.labels)


def _check_run_at(c: Collector, ts: timestamp_pb2.Timestamp, now: dt.datetime) -> None:
    if problem := timestamp_error(ts):
        c.add("run_at", problem)
    elif ts.ToDatetime(tzinfo=dt.UTC) > now + MAX_DELAY:
        # A time in the past is fine: the task is due at once.
        c.add("run_at", f"must be at most {MAX_DELAY.days} days in the future")


def _check_submit(
    c: Collector, request: tasks_pb2.SubmitTaskRequest, limits: Limits, now: dt.datetime
) -> None:
    check_input(c, request, limits)
    if request.HasField("options"):
        check_options(c.child("options."), request.options, now)
    for field, description in unknown_fields_of(request):
        c.add(field, description)


def validate_submit(
    request: tasks_pb2.SubmitTaskRequest,
    limits: Limits,
    prefix: str = "",
    *,
    now: dt.datetime | None = None,
) -> None:
    """Raises InvalidArgument naming every invalid field of a submit request.

    ``prefix`` is put before every field path; ``now`` (UTC) is for tests.
    """
    c = Collector(prefix)
    _check_submit(c, request, limits, now or dt.datetime.now(dt.UTC))
    c.raise_if_any()


def validate_submit_many(
    request: tasks_pb2.SubmitTasksRequest, limits: Limits, *, now: dt.datetime | None = None
) -> None:
    """Raises InvalidArgument naming every invalid field of every request of a batch.

    Paths start with ``requests[i].``; at most MAX_VIOLATIONS are listed.
    """
    c = Collector()
    maximum = limits.max_tasks_per_call
    if check_count(c, "requests", len(request.requests), maximum, "request", "tasks per call"):
        moment = now or dt.datetime.now(dt.UTC)
        for i, item in enumerate(request.requests):
            _check_submit(c.child(f"requests[{i}]."), item, limits, moment)
            if c.full:
                break
    for field, description in unknown_fields_of(request, nested=False):
        c.add(field, description)
    c.raise_if_any()
