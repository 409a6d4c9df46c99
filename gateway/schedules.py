"""ScheduleService: periodic schedules, kept in KV and ticked by the scheduler."""

from __future__ import annotations

from typing import Any

from conveyor.api.schedules.v1 import schedules_pb2, schedules_pb2_grpc
from conveyor.config import Limits
from conveyor.errors import InvalidArgument
from conveyor.intake.catalog import TypeCatalog
from conveyor.intake.checks import unknown_type
from conveyor.intake.control import TEMPLATE, schedule_violations, validate_schedule_id
from conveyor.intake.submit import Submitter
from conveyor.schedules import ScheduleBook
from conveyor.tasks import now, task_type_of, timestamp
from conveyor.ticks import next_tick

Context = Any  # grpc.aio.ServicerContext; grpc ships no type information


class ScheduleService(schedules_pb2_grpc.ScheduleServiceServicer):
    """Creates, changes and triggers schedules."""

    def __init__(
        self, book: ScheduleBook, submitter: Submitter, catalog: TypeCatalog, limits: Limits
    ) -> None:
        self._book = book
        self._submitter = submitter
        self._catalog = catalog
        self._limits = limits

    async def CreateSchedule(
        self, request: schedules_pb2.CreateScheduleRequest, context: Context
    ) -> schedules_pb2.CreateScheduleResponse:
        validate_schedule_id(request.schedule_id)
        spec = request.spec
        problems = schedule_violations(request, self._limits)
        if not problems and await self._catalog.get(task_type_of(spec.task)) is None:
            problems.append(unknown_type(spec.task, TEMPLATE))
        if problems:
            raise InvalidArgument.for_fields(problems)
        created = now()
        schedule = schedules_pb2.Schedule(
            id=request.schedule_id,
            spec=spec,
            create_time=timestamp(created),
            next_tick_time=timestamp(next_tick(spec, created, created)),
        )
        await self._book.create(schedule)
        return schedules_pb2.CreateScheduleResponse(schedule=schedule)

    async def GetSchedule(
        self, request: schedules_pb2.GetScheduleRequest, context: Context
    ) -> schedules_pb2.GetScheduleResponse:
        validate_schedule_id(request.schedule_id)
        schedule, _ = await self._book.get(request.schedule_id)
        return schedules_pb2.GetScheduleResponse(schedule=schedule)

    async def ListSchedules(
        self, request: schedules_pb2.ListSchedulesRequest, context: Context
    ) -> schedules_pb2.ListSchedulesResponse:
        return schedules_pb2.ListSchedulesResponse(schedules=await self._book.all())

    async def PauseSchedule(
        self, request: schedules_pb2.PauseScheduleRequest, context: Context
    ) -> schedules_pb2.PauseScheduleResponse:
        validate_schedule_id(request.schedule_id)

        def pause(schedule: schedules_pb2.Schedule) -> bool:
            schedule.paused = True
            return True

        return schedules_pb2.PauseScheduleResponse(
            schedule=await self._book.change(request.schedule_id, pause)
        )

    async def ResumeSchedule(
        self, request: schedules_pb2.ResumeScheduleRequest, context: Context
    ) -> schedules_pb2.ResumeScheduleResponse:
        validate_schedule_id(request.schedule_id)

        def resume(schedule: schedules_pb2.Schedule) -> bool:
            if not schedule.paused:
                return False
            schedule.paused = False
            # Ticks that passed while paused are not "missed": go on from the next one.
            current = now()
            anchor = schedule.create_time.ToDatetime(tzinfo=current.tzinfo)
            schedule.next_tick_time.CopyFrom(timestamp(next_tick(schedule.spec, current, anchor)))
            return True

        return schedules_pb2.ResumeScheduleResponse(
            schedule=await self._book.change(request.schedule_id, resume)
        )

    async def DeleteSchedule(
        self, request: schedules_pb2.DeleteScheduleRequest, context: Context
    ) -> schedules_pb2.DeleteScheduleResponse:
        validate_schedule_id(request.schedule_id)
        await self._book.delete(request.schedule_id)
        return schedules_pb2.DeleteScheduleResponse()

    async def TriggerSchedule(
        self, request: schedules_pb2.TriggerScheduleRequest, context: Context
    ) -> schedules_pb2.TriggerScheduleResponse:
        validate_schedule_id(request.schedule_id)
        schedule, _ = await self._book.get(request.schedule_id)
        template = schedules_pb2.ScheduleSpec().task
        template.CopyFrom(schedule.spec.task)
        template.options.ClearField("idempotency_key")  # each trigger is a new task
        [accepted] = await self._submitter.submit([(TEMPLATE, template)], schedule.id)

        def record(current: schedules_pb2.Schedule) -> bool:
            current.last_task_id = accepted.task.id
            current.created_tasks += 1
            return True

        await self._book.change(schedule.id, record)
        return schedules_pb2.TriggerScheduleResponse(task=accepted.task)
