"""QueueService: each task type's queue, paused or not, and its cluster-wide limits.

The controls live in the ``conveyor_queues`` KV bucket, which every worker watches; the
depths come from the JetStream consumers of each type and priority.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from conveyor import subjects
from conveyor.api.queues.v1 import queues_pb2, queues_pb2_grpc
from conveyor.errors import FieldViolation, InvalidArgument, NotFound, Unavailable
from gateway.catalog import TypeCatalog

Context = Any  # grpc.aio.ServicerContext; grpc ships no type information
PRIORITIES = ("high", "normal", "low")
MAX_CONCURRENCY = 100_000
MAX_PER_SECOND = 1_000_000.0


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
        violations = []
        if limits.max_concurrency > MAX_CONCURRENCY:
            violations.append(
                FieldViolation("limits.max_concurrency", f"must be at most {MAX_CONCURRENCY}")
            )
        rate = limits.max_per_second
        if not math.isfinite(rate) or rate < 0 or rate > MAX_PER_SECOND:
            violations.append(
                FieldViolation(
                    "limits.max_per_second", f"must be a number from 0 to {MAX_PER_SECOND:g}"
                )
            )
        if violations:
            raise InvalidArgument.for_fields(violations)
        await self._change(request.type, lambda q: q.limits.CopyFrom(limits))
        return queues_pb2.SetQueueLimitsResponse(queue=await self._describe(request.type))

    async def _known(self, task_type: str) -> None:
        if not subjects.TASK_TYPE_PATTERN.match(task_type):
            raise InvalidArgument.for_fields(
                [FieldViolation("type", f"must match {subjects.TASK_TYPE_PATTERN.pattern}")]
            )
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
