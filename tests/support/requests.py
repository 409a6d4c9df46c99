"""Submit requests the fault tests send."""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2

from conveyor.api.tasks.v1 import tasks_pb2 as S


def text_request(index: int) -> S.SubmitTaskRequest:
    """A small, quick task."""
    return S.SubmitTaskRequest(
        text_processing=S.TextProcessingInput(text=f"task {index}. Fault tests. Nothing lost.")
    )


def sleep_request(seconds: float, **payload: Any) -> S.SubmitTaskRequest:
    """A task of the test type ``sleep`` (tests/faults/handlers.py)."""
    struct = struct_pb2.Struct()
    struct.update({"seconds": seconds, **payload})
    return S.SubmitTaskRequest(custom=S.CustomTaskInput(type="sleep", payload=struct))
