"""The public TaskService: submits are handled here, reads and control go to the store."""

from __future__ import annotations

import logging
from typing import Any

import grpc

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.config import Limits
from conveyor.intake.submit import Submitter
from conveyor.intake.validation import validate_submit, validate_submit_many
from conveyor.metrics import GatewayMetrics
from gateway.feeds import TaskFeeds
from gateway.relay import parses_as, relay_handlers
from gateway.watch import StoreWatches

log = logging.getLogger(__name__)

Context = Any  # grpc.aio.ServicerContext; grpc ships no type information
TASK_SERVICE = tasks_pb2.DESCRIPTOR.services_by_name["TaskService"]


class GatewayService:
    """Thin servicer of the submits: proto in, validated call, proto out."""

    def __init__(
        self,
        submitter: Submitter,
        limits: Limits,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._submitter = submitter
        self.limits = limits
        self._metrics = metrics or GatewayMetrics()

    async def SubmitTask(
        self, request: tasks_pb2.SubmitTaskRequest, context: Context
    ) -> tasks_pb2.SubmitTaskResponse:
        validate_submit(request, self.limits)
        [accepted] = await self._submitter.submit([("", request)])
        self._metrics.count_submitted([(accepted.task.type, accepted.deduplicated)])
        log.debug("accepted task %s of type %s", accepted.task.id, accepted.task.type)
        return tasks_pb2.SubmitTaskResponse(task=accepted.task, deduplicated=accepted.deduplicated)

    async def SubmitTasks(
        self, request: tasks_pb2.SubmitTasksRequest, context: Context
    ) -> tasks_pb2.SubmitTasksResponse:
        validate_submit_many(request, self.limits)
        accepted = await self._submitter.submit(
            [(f"requests[{i}].", r) for i, r in enumerate(request.requests)]
        )
        self._metrics.count_submitted((a.task.type, a.deduplicated) for a in accepted)
        log.debug("accepted %d tasks in one batch", len(accepted))
        return tasks_pb2.SubmitTasksResponse(tasks=[a.task for a in accepted])


def add_task_service(
    server: grpc.aio.Server,
    service: GatewayService,
    store: grpc.aio.Channel,
    watches: StoreWatches | None = None,
    feeds: TaskFeeds | None = None,
) -> None:
    """Serves TaskService on ``server``: the submits by ``service``, the watches over one
    call to the store behind ``store`` (gateway.watch), every other method relayed to the
    store as bytes (gateway.relay). Registered by hand in place of the generated
    ``add_TaskServiceServicer_to_server``, whose handlers would parse and re-serialize
    every relayed message. ``watches`` and ``feeds``, when given, are shared with the
    HTTP door; WatchTasks streams count against the same watch limit as WatchTask."""
    if watches is None:
        watches = StoreWatches(store, service.limits.max_message_bytes, service.limits.max_watches)
    if feeds is None:
        feeds = TaskFeeds(store, watches)
    handlers = {
        "SubmitTask": grpc.unary_unary_rpc_method_handler(
            service.SubmitTask,
            request_deserializer=tasks_pb2.SubmitTaskRequest.FromString,
            response_serializer=tasks_pb2.SubmitTaskResponse.SerializeToString,
        ),
        "SubmitTasks": grpc.unary_unary_rpc_method_handler(
            service.SubmitTasks,
            request_deserializer=tasks_pb2.SubmitTasksRequest.FromString,
            response_serializer=tasks_pb2.SubmitTasksResponse.SerializeToString,
        ),
        "WatchTask": grpc.unary_stream_rpc_method_handler(
            watches.WatchTask, request_deserializer=tasks_pb2.WatchTaskRequest.FromString
        ),
        # Parsed only to refuse undecodable bytes here; the store gets the client's own.
        "WatchTasks": grpc.unary_stream_rpc_method_handler(
            feeds.WatchTasks,
            request_deserializer=parses_as(TASK_SERVICE.methods_by_name["WatchTasks"]),
        ),
    }
    relayed = [m for m in TASK_SERVICE.methods if m.name not in handlers]
    handlers.update(relay_handlers(store, relayed))
    name = TASK_SERVICE.full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)
