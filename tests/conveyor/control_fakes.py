"""Fake ScheduleService, QueueService and TaskService on one real gRPC server, as the
gateway serves them: they record every request and answer like the gateway would,
including its InvalidArgument field names, NotFound and AlreadyExists."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeAlias

import grpc
from google.protobuf.message import Message
from grpc_status import rpc_status

from conveyor import subjects
from conveyor.api.queues.v1 import queues_pb2, queues_pb2_grpc
from conveyor.api.schedules.v1 import schedules_pb2, schedules_pb2_grpc
from conveyor.api.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from conveyor.errors import AlreadyExists, ConveyorError, FieldViolation, InvalidArgument, NotFound
from conveyor.server import status_for
from conveyor.tasks import task_type_of, timestamp
from conveyor.ticks import SCHEDULE_ID_PATTERN, spec_violations

Context: TypeAlias = "grpc.ServicerContext"
TASK_ID = "01jb0000000000000000000000"
CREATED = timestamp(dt.datetime(2031, 5, 1, 6, 30, tzinfo=dt.UTC))
NEXT_TICK = timestamp(dt.datetime(2031, 5, 1, 7, 0, tzinfo=dt.UTC))


def abort(context: Context, error: ConveyorError) -> NoReturn:
    context.abort_with_status(rpc_status.to_status(status_for(error)))
    raise AssertionError("abort returned")


def sample_schedules() -> dict[str, schedules_pb2.Schedule]:
    """A cron schedule that has run and a paused interval schedule."""
    digest = schedules_pb2.Schedule(
        id="digest",
        spec=schedules_pb2.ScheduleSpec(
            cron="0 7 * * *",
            time_zone="Europe/Paris",
            task=tasks_pb2.SubmitTaskRequest(
                text_processing=tasks_pb2.TextProcessingInput(text="news"),
                options=tasks_pb2.TaskOptions(priority=tasks_pb2.TASK_PRIORITY_HIGH),
            ),
            overlap=schedules_pb2.OVERLAP_POLICY_ALLOW,
            catch_up=schedules_pb2.CATCH_UP_POLICY_RUN_ONCE,
            description="Morning digest",
        ),
        create_time=CREATED,
        next_tick_time=NEXT_TICK,
        last_task_id="01jbdigest0000000000000000",
        created_tasks=12,
        skipped_ticks=1,
    )
    cleanup = schedules_pb2.Schedule(
        id="cleanup",
        spec=schedules_pb2.ScheduleSpec(
            task=tasks_pb2.SubmitTaskRequest(custom=tasks_pb2.CustomTaskInput(type="purge_old"))
        ),
        paused=True,
        create_time=CREATED,
    )
    cleanup.spec.interval.FromSeconds(3600)
    return {"cleanup": cleanup, "digest": digest}


@dataclass
class FakeSchedules(schedules_pb2_grpc.ScheduleServiceServicer):
    """Schedules in a dict; validation as the gateway's (same helpers, same fields)."""

    schedules: dict[str, schedules_pb2.Schedule] = field(default_factory=sample_schedules)
    requests: list[Message] = field(default_factory=list)

    def _find(self, request: Any, context: Context) -> schedules_pb2.Schedule:
        self.requests.append(request)
        if request.schedule_id not in self.schedules:
            abort(context, NotFound(f"schedule {request.schedule_id!r} does not exist"))
        return self.schedules[request.schedule_id]

    def CreateSchedule(
        self, request: schedules_pb2.CreateScheduleRequest, context: Context
    ) -> schedules_pb2.CreateScheduleResponse:
        self.requests.append(request)
        problems = spec_violations(request.spec)
        if not SCHEDULE_ID_PATTERN.match(request.schedule_id):
            problems.insert(0, FieldViolation("schedule_id", "must match the id pattern"))
        task = request.spec.task
        if task.HasField("text_processing") and not task.text_processing.text:
            problems.append(FieldViolation("spec.task.text_processing.text", "must not be empty"))
        if problems:
            abort(context, InvalidArgument.for_fields(problems))
        if request.schedule_id in self.schedules:
            abort(context, AlreadyExists(f"schedule {request.schedule_id!r} exists already"))
        schedule = schedules_pb2.Schedule(
            id=request.schedule_id, spec=request.spec, create_time=CREATED, next_tick_time=NEXT_TICK
        )
        self.schedules[schedule.id] = schedule
        return schedules_pb2.CreateScheduleResponse(schedule=schedule)

    def GetSchedule(
        self, request: schedules_pb2.GetScheduleRequest, context: Context
    ) -> schedules_pb2.GetScheduleResponse:
        return schedules_pb2.GetScheduleResponse(schedule=self._find(request, context))

    def ListSchedules(
        self, request: schedules_pb2.ListSchedulesRequest, context: Context
    ) -> schedules_pb2.ListSchedulesResponse:
        self.requests.append(request)
        return schedules_pb2.ListSchedulesResponse(
            schedules=[self.schedules[k] for k in sorted(self.schedules)]
        )

    def PauseSchedule(
        self, request: schedules_pb2.PauseScheduleRequest, context: Context
    ) -> schedules_pb2.PauseScheduleResponse:
        schedule = self._find(request, context)
        schedule.paused = True
        return schedules_pb2.PauseScheduleResponse(schedule=schedule)

    def ResumeSchedule(
        self, request: schedules_pb2.ResumeScheduleRequest, context: Context
    ) -> schedules_pb2.ResumeScheduleResponse:
        schedule = self._find(request, context)
        schedule.paused = False
        schedule.next_tick_time.CopyFrom(NEXT_TICK)
        return schedules_pb2.ResumeScheduleResponse(schedule=schedule)

    def DeleteSchedule(
        self, request: schedules_pb2.DeleteScheduleRequest, context: Context
    ) -> schedules_pb2.DeleteScheduleResponse:
        del self.schedules[self._find(request, context).id]
        return schedules_pb2.DeleteScheduleResponse()

    def TriggerSchedule(
        self, request: schedules_pb2.TriggerScheduleRequest, context: Context
    ) -> schedules_pb2.TriggerScheduleResponse:
        schedule = self._find(request, context)
        schedule.created_tasks += 1
        schedule.last_task_id = TASK_ID
        task = tasks_pb2.Task(
            id=TASK_ID,
            type=task_type_of(schedule.spec.task),
            state=tasks_pb2.TASK_STATE_PENDING,
            schedule_id=schedule.id,
            version=1,
        )
        return schedules_pb2.TriggerScheduleResponse(task=task)


def sample_queues() -> dict[str, queues_pb2.Queue]:
    """A paused, limited, busy queue and an idle one."""
    return {
        "image_processing": queues_pb2.Queue(
            type="image_processing",
            description="Resize and convert images",
            paused=True,
            limits=queues_pb2.QueueLimits(max_concurrency=3, max_per_second=2.5),
            waiting=[2, 5000, 0],
            in_flight=3,
        ),
        "text_processing": queues_pb2.Queue(
            type="text_processing", description="Text statistics", waiting=[0, 0, 0]
        ),
    }


@dataclass
class FakeQueues(queues_pb2_grpc.QueueServiceServicer):
    """Queues in a dict; validation as the gateway's QueueService."""

    queues: dict[str, queues_pb2.Queue] = field(default_factory=sample_queues)
    requests: list[Message] = field(default_factory=list)

    def _find(self, request: Any, context: Context) -> queues_pb2.Queue:
        self.requests.append(request)
        if not subjects.TASK_TYPE_PATTERN.match(request.type):
            abort(context, InvalidArgument.for_fields([FieldViolation("type", "bad type name")]))
        if request.type not in self.queues:
            abort(context, NotFound(f"task type {request.type!r} is not registered by any worker"))
        return self.queues[request.type]

    def ListQueues(
        self, request: queues_pb2.ListQueuesRequest, context: Context
    ) -> queues_pb2.ListQueuesResponse:
        self.requests.append(request)
        return queues_pb2.ListQueuesResponse(queues=[self.queues[k] for k in sorted(self.queues)])

    def PauseQueue(
        self, request: queues_pb2.PauseQueueRequest, context: Context
    ) -> queues_pb2.PauseQueueResponse:
        queue = self._find(request, context)
        queue.paused = True
        return queues_pb2.PauseQueueResponse(queue=queue)

    def ResumeQueue(
        self, request: queues_pb2.ResumeQueueRequest, context: Context
    ) -> queues_pb2.ResumeQueueResponse:
        queue = self._find(request, context)
        queue.paused = False
        return queues_pb2.ResumeQueueResponse(queue=queue)

    def SetQueueLimits(
        self, request: queues_pb2.SetQueueLimitsRequest, context: Context
    ) -> queues_pb2.SetQueueLimitsResponse:
        queue = self._find(request, context)
        rate = request.limits.max_per_second
        if not math.isfinite(rate) or not 0 <= rate <= 1e6:
            violation = FieldViolation("limits.max_per_second", "must be a number from 0 to 1e+06")
            abort(context, InvalidArgument.for_fields([violation]))
        queue.limits.CopyFrom(request.limits)
        return queues_pb2.SetQueueLimitsResponse(queue=queue)


class FakeTasks(tasks_pb2_grpc.TaskServiceServicer):
    """Just enough TaskService to show it shares the channel with the other two."""

    def GetTask(
        self, request: tasks_pb2.GetTaskRequest, context: Context
    ) -> tasks_pb2.GetTaskResponse:
        task = tasks_pb2.Task(id=request.task_id, state=tasks_pb2.TASK_STATE_COMPLETED)
        return tasks_pb2.GetTaskResponse(task=task)


@dataclass
class Gateway:
    """The fakes and the address serving them."""

    schedules: FakeSchedules
    queues: FakeQueues
    addr: str


@contextlib.contextmanager
def serve() -> Iterator[Gateway]:
    """A gRPC server on 127.0.0.1:0 with all three fakes, stopped on exit."""
    schedules, queues = FakeSchedules(), FakeQueues()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    schedules_pb2_grpc.add_ScheduleServiceServicer_to_server(schedules, server)
    queues_pb2_grpc.add_QueueServiceServicer_to_server(queues, server)
    tasks_pb2_grpc.add_TaskServiceServicer_to_server(FakeTasks(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield Gateway(schedules, queues, f"127.0.0.1:{port}")
    finally:
        server.stop(None)
