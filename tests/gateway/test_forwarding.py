"""Reads the gateway forwards to the store carry the caller's trace as call metadata (the
gateway's store channel has no client interceptors)."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import TracerProvider

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.config import Limits
from gateway.service import GatewayService


class _Store:
    """A store stub that records how it was called."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def GetTask(self, request: Any, **kwargs: Any) -> tasks_pb2.GetTaskResponse:
        self.calls.append(kwargs)
        return tasks_pb2.GetTaskResponse(task=tasks_pb2.Task(id=request.task_id))


async def test_forwarded_reads_carry_the_trace_context() -> None:
    store = _Store()
    service = GatewayService(submitter=Any, store=store, limits=Limits())  # type: ignore[arg-type]
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("caller") as span:
        response = await service.GetTask(tasks_pb2.GetTaskRequest(task_id="x"), None)
    assert response.task.id == "x"
    [call] = store.calls
    metadata = dict(call["metadata"])
    context = span.get_span_context()
    assert metadata["traceparent"].split("-")[1:3] == [
        format(context.trace_id, "032x"),
        format(context.span_id, "016x"),
    ]
    assert call["timeout"] > 0
