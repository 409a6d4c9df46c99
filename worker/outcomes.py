"""How an attempt ends, and the ``Retries`` middleware that decides it for a failed one.

A handler's exceptions are the outcome vocabulary (``Retry(delay)``, ``NonRetryable``,
a time limit, a cancel, anything else): ``Retries`` turns each into an :class:`Outcome`,
as dramatiq's ``Retries`` middleware does, and the runner only records outcomes.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass

from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.errors import NonRetryable, Retry, TaskCancelled, TaskTimeout
from conveyor.jsonlike import valid_text
from conveyor.registry import RetryPolicy
from conveyor.tasks import seconds, timestamp
from conveyor.tracebacks import MAX_ERROR_CHARS, traceback_of
from worker.middleware import Job, Middleware

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = 365 * 86_400.0
"""The longest delay a handler's Retry may ask for, as the longest a submit may ask for."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ends: the event recorded (``completed``, ``cancelled``,
    ``retrying`` or ``failed``), then the message acked, naked after ``delay`` or
    terminated."""

    event: str
    result: tasks_pb2.TaskResult | None = None
    error: tasks_pb2.TaskError | None = None
    delay: float = 0.0


CANCELLED = Outcome("cancelled")


def failed(attempt: int, kind: str, text: str, traceback: str = "") -> Outcome:
    """A task failed for good (a dead letter)."""
    return Outcome("failed", error=task_error(attempt, kind, text or kind, traceback))


class Retries(Middleware):
    """Decides what a failed attempt comes to: a cancelled one ends there, a
    ``NonRetryable`` one fails the task, anything else runs again after the handler's
    ``Retry`` delay or the task's backoff while it has attempts left. The error of an
    exception the handler raised carries its traceback; a time limit's none."""

    def outcome(self, job: Job, error: Exception) -> Outcome | None:
        attempt = job.ctx.attempt
        if isinstance(error, TaskCancelled):
            return CANCELLED
        if isinstance(error, NonRetryable):
            return failed(attempt, type(error).__name__, text_of(error), traceback_of(error))
        if isinstance(error, Retry):
            reason, delay = retry_asked(error)
            return self._retry_or_fail(job, "Retry", reason, traceback_of(error), delay)
        if isinstance(error, TaskTimeout):
            return self._retry_or_fail(job, "timeout", text_of(error), "")
        kind, text = type(error).__name__, text_of(error)
        log.warning("attempt failed: %s: %s", kind, text, exc_info=error)
        return self._retry_or_fail(job, kind, text, traceback_of(error))

    def _retry_or_fail(
        self, job: Job, kind: str, text: str, traceback: str, delay: float | None = None
    ) -> Outcome:
        ctx = job.ctx
        if ctx.attempt >= ctx.max_attempts:
            return failed(ctx.attempt, kind, text, traceback)
        if delay is None:
            run_attempt = ctx.attempt - job.message.attempt_offset
            delay = retry_policy_of(job.message).delay(run_attempt, random.random())
        error = task_error(ctx.attempt, kind, text or kind, traceback)
        return Outcome("retrying", error=error, delay=delay)


def retry_policy_of(message: events_pb2.TaskMessage) -> RetryPolicy:
    """The task's backoff, with defaults for unset fields."""
    p = message.retry_policy
    default = RetryPolicy()
    return RetryPolicy(
        initial_delay=seconds(p.initial_delay) or default.initial_delay,
        max_delay=seconds(p.max_delay) or default.max_delay,
        multiplier=p.multiplier or default.multiplier,
    )


def text_of(value: object) -> str:
    """``str(value)``, or a note when that fails: an exception whose message cannot be read
    must still fail its attempt, not the publish of the outcome."""
    try:
        return str(value)
    except Exception:
        return f"({type(value).__name__} whose message could not be read)"


def retry_asked(retry: Retry) -> tuple[str, float | None]:
    """The reason and delay a handler's Retry asks for; a delay that is not a number of
    seconds within MAX_RETRY_DELAY is replaced by the task's backoff (None), and said so."""
    reason, delay = text_of(retry.reason), retry.delay
    if delay is None:
        return reason, None
    number = isinstance(delay, int | float) and not isinstance(delay, bool)
    if number and math.isfinite(delay) and 0 <= delay <= MAX_RETRY_DELAY:
        return reason, float(delay)
    note = f"Retry delay {text_of(delay)[:40]} is not 0..{MAX_RETRY_DELAY:.0f} seconds"
    return f"{reason} ({note}; the task's backoff was used)", None


def task_error(attempt: int, kind: str, message: str, traceback: str = "") -> tasks_pb2.TaskError:
    """A TaskError stamped now; ``traceback`` comes bounded (conveyor.tracebacks)."""
    return tasks_pb2.TaskError(
        attempt=attempt,
        type=valid_text(kind[:MAX_ERROR_CHARS]),
        message=valid_text(message[:MAX_ERROR_CHARS]),
        time=timestamp(),
        traceback=traceback,
    )
