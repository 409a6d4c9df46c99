"""One error tree for Conveyor. Each class carries the gRPC status code it maps to.

Servers raise these; the error interceptor turns them into statuses (with
``google.rpc.BadRequest`` field violations for :class:`InvalidArgument`), and the client
SDK turns statuses back into these classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field: its path in the request and what is wrong with it."""

    field: str
    description: str


class ConveyorError(Exception):
    """Raised when a Conveyor operation fails; the base of every Conveyor error."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ConveyorError):
    """Raised when a request is malformed; names every offending field."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str, violations: list[FieldViolation] | None = None) -> None:
        super().__init__(message)
        self.violations = list(violations or [])

    @classmethod
    def for_fields(cls, violations: list[FieldViolation]) -> InvalidArgument:
        """An error listing the violations, its message naming each field."""
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        return cls(f"invalid request: {summary}", violations)


class NotFound(ConveyorError):
    """Raised when a task or schedule does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ConveyorError):
    """Raised when creating something that exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ConveyorError):
    """Raised when the target is in the wrong state, such as cancelling a finished task."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ConveyorError):
    """Raised when a limit is reached; ``limit`` names it (a ``CONVEYOR_`` variable),
    carried as a ``google.rpc.QuotaFailure`` violation's subject."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, limit: str = "") -> None:
        super().__init__(message)
        self.limit = limit


class Unauthenticated(ConveyorError):
    """Raised when a call carries no credentials, or credentials that are not valid."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ConveyorError):
    """Raised when the caller's role does not allow the call."""

    code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(ConveyorError):
    """Raised when a dependency (NATS, the store) cannot be reached; safe to retry."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ConveyorError):
    """Raised when an operation did not finish in time."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unimplemented(ConveyorError):
    """Raised when a service is asked for a method it does not serve."""

    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(ConveyorError):
    """Raised when a service failed in a way that is a bug, not the caller's fault."""

    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[ConveyorError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        ResourceExhausted,
        Unauthenticated,
        PermissionDenied,
        Unavailable,
        DeadlineExceeded,
        Unimplemented,
        Internal,
    )
}


def error_class_for(code: grpc.StatusCode) -> type[ConveyorError]:
    """The error class a status code maps to (ConveyorError for unmapped codes)."""
    return _BY_CODE.get(code, ConveyorError)


# --- Task outcomes: raised by handlers, interpreted by the worker -----------------------


class TaskOutcome(Exception):
    """Base of the exceptions a handler raises to steer what happens to its task."""


class Retry(TaskOutcome):
    """Raised by a handler to run the task again after ``delay`` seconds.

    >>> raise Retry(delay=30, reason="rate limited upstream")  # doctest: +SKIP
    """

    def __init__(self, delay: float | None = None, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.delay = delay
        self.reason = reason


class NonRetryable(TaskOutcome):
    """Raised by a handler to fail the task at once, without further attempts."""


class TaskTimeout(TaskOutcome):
    """Raised when an attempt ran past its time limit."""


class TaskCancelled(TaskOutcome):
    """Raised inside a handler when a client cancelled its task."""
