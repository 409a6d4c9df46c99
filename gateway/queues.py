"""QueueService: each task type's queue, paused or not, and its cluster-wide limits.

The controls live in the ``conveyor_queues`` KV bucket, which every worker watches; the
depths come from the JetStream consumers of each type and priority.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from conveyor import subjects
from conveyor.api.queues.v1 import queues_pb2, queues_pb2_grpc
from conveyor.errors import NotFound, Unavailable
from conveyor.intake.catalog import TypeCatalog
from conveyor.intake.control import validate_queue_limits, validate_queue_type

Context = Any  # grpc.aio.ServicerContext; grpc ships no type information
PRIORITIES = ("high", "normal", "low")


class QueueService(queues_pb2_grpc.QueueServiceServicer):
    """Reads and writes queue controls; workers apply them."""

    def __init__(self, js: JetStreamContext, queues: KeyValue, catalog: TypeCatalog) -> None:
        self._js = js
        self._queues = queues
        self._catalog = catalog

    async def ListQueues(
        self, request: queues_pb2.ListQueuesRequest, context: Context
    ) -> queues_pb2.ListQueuesResponse:
        queues = [await self._describe(name) for name in self._catalog.names()]
        return queues_pb2.ListQueuesResponse(queues=queues)

    async def PauseQueue(
        self, request: queues_pb2.PauseQueueRequest, context: Context
    ) -> queues_pb2.PauseQueueResponse:
        await self._change(request.type, lambda q: setattr(q, "paused", True))
        return queues_pb2.PauseQueueResponse(queue=await self._describe(request.type))

    async def ResumeQueue(
        self, request: queues_pb2.ResumeQueueRequest, context: Context
    ) -> queues_pb2.ResumeQueueResponse:
        await self._change(request.type, lambda q: setattr(q, "paused", False))
        return queues_pb2.ResumeQueueResponse(queue=await self._describe(request.type))

    async def SetQueueLimits(
        self, request: queues_pb2.SetQueueLimitsRequest, context: Context
    ) -> queues_pb2.SetQueueLimitsResponse:
        limits = request.limits
        validate_queue_limits(limits)
        await self._change(request.type, lambda q: q.limits.CopyFrom(limits))
        return queues_pb2.SetQueueLimitsResponse(queue=await self._describe(request.type))

    async def _known(self, task_type: str) -> None:
        validate_queue_type(task_type)
        if await self._catalog.get(task_type) is None:
            raise NotFound(f"task type {task_type!r} is not registered by any worker")

    async def _change(self, task_type: str, change: Callable[[queues_pb2.Queue], None]) -> None:
        """Read-modify-write of a type's controls, retried on a concurrent change."""
        await self._known(task_type)
        for _ in range(10):
            try:
                entry = await self._queues.get(task_type)
                queue = queues_pb2.Queue.FromString(entry.value or b"")
                revision: int | None = entry.revision
            except KeyNotFoundError:
                queue, revision = queues_pb2.Queue(type=task_type), None
            change(queue)
            value = queue.SerializeToString()
            try:
                if revision is None:
                    await self._queues.create(task_type, value)
                else:
                    await self._queues.update(task_type, value, last=revision)
                return
            except KeyWrongLastSequenceError:
                continue
        raise Unavailable(f"the controls of {task_type} keep changing; try again")

    async def _describe(self, task_type: str) -> queues_pb2.Queue:
        await self._known(task_type)
        try:
            entry = await self._queues.get(task_type)
            queue = queues_pb2.Queue.FromString(entry.value or b"")
        except KeyNotFoundError:
            queue = queues_pb2.Queue()
        queue.type = task_type
        spec = await self._catalog.get(task_type)
        queue.description = spec.description if spec else ""
        del queue.waiting[:]
        queue.in_flight = 0
        infos = await asyncio.gather(
            *(self._consumer(task_type, priority) for priority in PRIORITIES)
        )
        for info in infos:
            queue.waiting.append(info[0])
            queue.in_flight += info[1]
        return queue

    async def _consumer(self, task_type: str, priority: str) -> tuple[int, int]:
        try:
            info = await self._js.consumer_info(
                subjects.STREAM_TASKS, subjects.worker_consumer(task_type, priority)
            )
        except NotFoundError:
            return 0, 0
        return int(info.num_pending or 0), int(info.num_ack_pending or 0)
