"""Validation of the control requests: schedules (ScheduleService) and queue controls
(QueueService). A schedule's task template is checked as a submit request, by
``conveyor.intake.validation``, with its violations under ``spec.task.``."""

from __future__ import annotations

import math

from conveyor.api.queues.v1 import queues_pb2
from conveyor.api.schedules.v1 import schedules_pb2
from conveyor.config import Limits
from conveyor.errors import FieldViolation, InvalidArgument
from conveyor.intake.checks import TYPE_NAME_RULE, Collector
from conveyor.intake.unknown import unknown_fields_of
from conveyor.intake.validation import validate_submit
from conveyor.subjects import TASK_TYPE_PATTERN
from conveyor.ticks import SCHEDULE_ID_PATTERN, spec_violations

TEMPLATE = "spec.task."
"""Where a schedule's task template sits in its requests, as a field path prefix."""
MAX_CONCURRENCY = 100_000
MAX_PER_SECOND = 1_000_000.0


def validate_schedule_id(schedule_id: str) -> None:
    """Raises InvalidArgument unless the id has the allowed shape."""
    if not SCHEDULE_ID_PATTERN.match(schedule_id):
        raise InvalidArgument.for_fields(
            [FieldViolation("schedule_id", f"must match {SCHEDULE_ID_PATTERN.pattern}")]
        )


def schedule_violations(
    request: schedules_pb2.CreateScheduleRequest, limits: Limits
) -> list[FieldViolation]:
    """Every problem of a new schedule's spec and task template (the template's type is
    looked up by the caller, once nothing else is wrong)."""
    spec = request.spec
    problems = spec_violations(spec)
    if spec.task.options.HasField("run_at"):
        problems.append(
            FieldViolation(
                f"{TEMPLATE}options.run_at",
                "a repeating task cannot have a fixed start time (use delay)",
            )
        )
    if spec.task.options.idempotency_key:
        problems.append(
            FieldViolation(
                f"{TEMPLATE}options.idempotency_key",
                "each tick sets its own key (schedule:<id>:<tick>); leave it empty",
            )
        )
    try:
        validate_submit(spec.task, limits, prefix=TEMPLATE)
    except InvalidArgument as exc:
        problems.extend(exc.violations)
    problems.extend(
        FieldViolation(field, description)
        for field, description in unknown_fields_of(request)
        if not field.startswith(TEMPLATE)  # reported by validate_submit
    )
    return problems


def validate_queue_type(task_type: str) -> None:
    """Raises InvalidArgument unless ``task_type`` can name a queue."""
    if not TASK_TYPE_PATTERN.match(task_type):
        raise InvalidArgument.for_fields([FieldViolation("type", TYPE_NAME_RULE)])


def validate_queue_limits(limits: queues_pb2.QueueLimits) -> None:
    """Raises InvalidArgument naming each limit out of its range."""
    c = Collector("limits.")
    if limits.max_concurrency > MAX_CONCURRENCY:
        c.add("max_concurrency", f"must be at most {MAX_CONCURRENCY}")
    rate = limits.max_per_second
    if not math.isfinite(rate) or rate < 0 or rate > MAX_PER_SECOND:
        c.add("max_per_second", f"must be a number from 0 to {MAX_PER_SECOND:g}")
    c.raise_if_any()
