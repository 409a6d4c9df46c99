"""Conveyor: typed tasks over gRPC, run by workers over NATS JetStream.

The public API of the SDK is re-exported here.
"""

from __future__ import annotations

from conveyor.errors import (
    AlreadyExists,
    ConveyorError,
    FailedPrecondition,
    InvalidArgument,
    NonRetryable,
    NotFound,
    Retry,
    TaskCancelled,
    TaskTimeout,
    Unavailable,
)

__all__ = [
    "AlreadyExists",
    "ConveyorError",
    "FailedPrecondition",
    "InvalidArgument",
    "NonRetryable",
    "NotFound",
    "Retry",
    "TaskCancelled",
    "TaskTimeout",
    "Unavailable",
]
