"""The public TaskService: submits are handled here, reads and control go to the store."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from conveyor import tracing
from conveyor.api.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from conveyor.config import Limits
from conveyor.metrics import GatewayMetrics
from gateway.submit import Submitter
from gateway.validation import validate_submit, validate_submit_many

log = logging.getLogger(__name__)

R = TypeVar("R")
Context = Any  # grpc.aio.ServicerContext; grpc ships no type information
STORE_CALL_TIMEOUT = 10.0


class GatewayService(tasks_pb2_grpc.TaskServiceServicer):
    """Thin servicer: proto in, validated call, proto out."""

    def __init__(
        self,
        submitter: Submitter,
        store: tasks_pb2_grpc.TaskServiceStub,
        limits: Limits,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._submitter = submitter
        self._store = store
        self._limits = limits
        self._metrics = metrics or GatewayMetrics()

    async def SubmitTask(
        self, request: tasks_pb2.SubmitTaskRequest, context: Context
    ) -> tasks_pb2.SubmitTaskResponse:
        validate_submit(request, self._limits)
        [accepted] = await self._submitter.submit([("", request)])
        self._metrics.count_submitted([(accepted.task.type, accepted.deduplicated)])
        log.debug("accepted task %s of type %s", accepted.task.id, accepted.task.type)
        return tasks_pb2.SubmitTaskResponse(task=accepted.task, deduplicated=accepted.deduplicated)

    async def SubmitTasks(
        self, request: tasks_pb2.SubmitTasksRequest, context: Context
    ) -> tasks_pb2.SubmitTasksResponse:
        validate_submit_many(request, self._limits)
        accepted = await self._submitter.submit(
            [(f"requests[{i}].", r) for i, r in enumerate(request.requests)]
        )
        self._metrics.count_submitted((a.task.type, a.deduplicated) for a in accepted)
        log.debug("accepted %d tasks in one batch", len(accepted))
        return tasks_pb2.SubmitTasksResponse(tasks=[a.task for a in accepted])

    async def GetTask(
        self, request: tasks_pb2.GetTaskRequest, context: Context
    ) -> tasks_pb2.GetTaskResponse:
        return await _forward(self._store.GetTask, request, context)

    async def ListTasks(
        self, request: tasks_pb2.ListTasksRequest, context: Context
    ) -> tasks_pb2.ListTasksResponse:
        return await _forward(self._store.ListTasks, request, context)

    async def CancelTask(
        self, request: tasks_pb2.CancelTaskRequest, context: Context
    ) -> tasks_pb2.CancelTaskResponse:
        return await _forward(self._store.CancelTask, request, context)

    async def GetTaskStats(
        self, request: tasks_pb2.GetTaskStatsRequest, context: Context
    ) -> tasks_pb2.GetTaskStatsResponse:
        return await _forward(self._store.GetTaskStats, request, context)

    async def RetryTask(
        self, request: tasks_pb2.RetryTaskRequest, context: Context
    ) -> tasks_pb2.RetryTaskResponse:
        return await _forward(self._store.RetryTask, request, context)

    async def WatchTask(
        self, request: tasks_pb2.WatchTaskRequest, context: Context
    ) -> AsyncIterator[tasks_pb2.WatchTaskResponse]:
        call = self._store.WatchTask(request, metadata=_trace_metadata())
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as err:
            await _abort_like(context, err)
        finally:
            call.cancel()


def _trace_metadata() -> tuple[tuple[str, str], ...]:
    """The current trace context as call metadata: the store's span joins the caller's
    trace. Sent by hand, not by client interceptors on the channel: grpc.aio's intercepted
    calls cost several times a plain call's CPU."""
    return tuple(tracing.inject().items())


async def _forward(call: Callable[..., Awaitable[R]], request: Any, context: Context) -> R:
    try:
        return await call(request, timeout=STORE_CALL_TIMEOUT, metadata=_trace_metadata())
    except grpc.aio.AioRpcError as err:
        await _abort_like(context, err)
        raise  # unreachable: abort raises


async def _abort_like(context: Context, err: grpc.aio.AioRpcError) -> None:
    """Ends the call with the store's status, details included, so clients see its reason."""
    metadata = tuple(
        (key, value)
        for key, value in (err.trailing_metadata() or ())
        if key == "grpc-status-details-bin"
    )
    details = err.details() or ""
    if err.code() == grpc.StatusCode.UNAVAILABLE:
        details = f"store unavailable: {details}"
    await context.abort(err.code(), details, metadata)
