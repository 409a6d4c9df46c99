"""Turning gRPC failures back into Conveyor's error tree, field violations included."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from conveyor.errors import (
    ConveyorError,
    FieldViolation,
    InvalidArgument,
    ResourceExhausted,
    error_class_for,
)

STATUS_DETAILS_KEY = "grpc-status-details-bin"
"""Trailing metadata key carrying the serialized google.rpc.Status."""


def _rich_status(metadata: Iterable[tuple[str, Any]] | None) -> status_pb2.Status | None:
    for key, value in metadata or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except DecodeError:
                return None  # a garbled detail must not hide the error itself
    return None


def field_violations(metadata: Iterable[tuple[str, Any]] | None) -> list[FieldViolation]:
    """The BadRequest field violations carried by a call's trailing metadata."""
    status = _rich_status(metadata)
    if status is None:
        return []
    found: list[FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            found.extend(
                FieldViolation(v.field, v.description) for v in bad_request.field_violations
            )
    return found


def quota_subject(metadata: Iterable[tuple[str, Any]] | None) -> str:
    """The limit named by a QuotaFailure in a call's trailing metadata ("" when none)."""
    status = _rich_status(metadata)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            quota = error_details_pb2.QuotaFailure()
            detail.Unpack(quota)
            for violation in quota.violations:
                subject: str = violation.subject
                return subject
    return ""


def error_from_rpc(error: grpc.RpcError) -> ConveyorError:
    """The Conveyor error matching a failed call (grpc.aio.AioRpcError or a sync RpcError).

    Codes without a class of their own (PERMISSION_DENIED, UNIMPLEMENTED...) give a plain
    ConveyorError whose ``code`` is the call's.
    """
    code: grpc.StatusCode = error.code()
    message = error.details() or code.name.lower().replace("_", " ")
    cls = error_class_for(code)
    result: ConveyorError
    if cls is InvalidArgument:
        result = InvalidArgument(message, field_violations(error.trailing_metadata()))
    elif cls is ResourceExhausted:
        result = ResourceExhausted(message, quota_subject(error.trailing_metadata()))
    else:
        result = cls(message)
    if cls is ConveyorError:
        result.code = code
    return result


def describe(error: ConveyorError) -> str:
    """One line for a person: the status in words, then what went wrong.

    >>> describe(InvalidArgument("bad", [FieldViolation("text_processing.text", "empty")]))
    'invalid argument: text_processing.text: empty'
    """
    kind = error.code.name.lower().replace("_", " ")
    if isinstance(error, InvalidArgument) and error.violations:
        return f"{kind}: " + "; ".join(f"{v.field}: {v.description}" for v in error.violations)
    return f"{kind}: {error.message}"
