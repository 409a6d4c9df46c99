"""Conveyor: typed tasks over gRPC, run by workers over NATS JetStream.

The public API of the SDK is re-exported here.
"""

from __future__ import annotations

from conveyor.client import AsyncClient, Client
from conveyor.context import TaskContext
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
from conveyor.registry import RetryPolicy, task

__all__ = [
    "AlreadyExists",
    "AsyncClient",
    "Client",
    "ConveyorError",
    "FailedPrecondition",
    "InvalidArgument",
    "NonRetryable",
    "NotFound",
    "Retry",
    "RetryPolicy",
    "TaskCancelled",
    "TaskContext",
    "TaskTimeout",
    "Unavailable",
    "task",
]
