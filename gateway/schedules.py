"""ScheduleService: periodic schedules, kept in KV and ticked by the scheduler."""

from __future__ import annotations

from typing import Any

from conveyor.api.schedules.v1 import schedules_pb2, schedules_pb2_grpc
from conveyor.config import Limits
from conveyor.errors import FieldViolation, InvalidArgument
from conveyor.schedules import ScheduleBook
from conveyor.tasks import now, task_type_of, timestamp
from conveyor.ticks import SCHEDULE_ID_PATTERN, next_tick, spec_violations
from gateway.catalog import TypeCatalog
from gateway.submit import Submitter
from gateway.unknown import unknown_fields_of
from gateway.validation import validate_submit

Context = Any  # grpc.aio.ServicerContext; grpc ships no type information


def validate_schedule_id(schedule_id: str) -> None:
    """Raises InvalidArgument unless the id has the allowed shape."""
    if not SCHEDULE_ID_PATTERN.match(schedule_id):
        raise InvalidArgument.for_fields(
            [FieldViolation("schedule_id", f"must match {SCHEDULE_ID_PATTERN.pattern}")]
        )


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
        problems = spec_violations(spec)
        if spec.task.options.HasField("run_at"):
            problems.append(
                FieldViolation(
                    "spec.task.options.run_at",
                    "a repeating task cannot have a fixed start time (use delay)",
                )
            )
        if spec.task.options.idempotency_key:
            problems.append(
                FieldViolation(
                    "spec.task.options.idempotency_key",
                    "each tick sets its own key (schedule:<id>:<tick>); leave it empty",
                )
            )
        try:
            validate_submit(spec.task, self._limits, prefix="spec.task.")
        except InvalidArgument as exc:
            problems.extend(exc.violations)
        problems.extend(
            FieldViolation(field, description)
            for field, description in unknown_fields_of(request)
            if not field.startswith("spec.task.")  # reported by validate_submit
        )
        if not problems and await self._catalog.get(task_type_of(spec.task)) is None:
            field = spec.task.WhichOneof("input")
            problems.append(
                FieldViolation(
                    f"spec.task.{'custom.type' if field == 'custom' else field}",
                    f"unknown task type {task_type_of(spec.task)!r}: no worker registered it",
                )
            )
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
        [accepted] = await self._submitter.submit([("spec.task.", template)], schedule.id)

        def record(current: schedules_pb2.Schedule) -> bool:
            current.last_task_id = accepted.task.id
            current.created_tasks += 1
            return True

        await self._book.change(schedule.id, record)
        return schedules_pb2.TriggerScheduleResponse(task=accepted.task)
