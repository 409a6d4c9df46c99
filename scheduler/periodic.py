"""Ticking periodic schedules: each due tick creates one ordinary task.

Exactly one task per tick, even with several schedulers running: the task is submitted
with the idempotency key ``schedule:<id>:<tick>``, so every scheduler that handles the
same tick gets the same task, and the schedule's state is advanced by compare-and-set, so
only one of them records it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import grpc

from conveyor.api.schedules.v1 import schedules_pb2
from conveyor.api.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from conveyor.auth.namespaces import in_namespace, namespace_metadata
from conveyor.auth.principal import DEFAULT_NAMESPACE
from conveyor.errors import ConveyorError
from conveyor.intake.control import TEMPLATE
from conveyor.intake.submit import Accepted, Submitter
from conveyor.schedules import ScheduleBook, ScheduleWatch
from conveyor.tasks import from_timestamp, is_terminal, now, timestamp
from conveyor.ticks import latest_due, next_tick, on_time

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2


class Unknown(Exception):
    """Raised when whether the previous run finished cannot be told right now."""


class PeriodicRunner:
    """Creates the tasks of due ticks."""

    def __init__(
        self,
        book: ScheduleBook,
        watch: ScheduleWatch,
        submitter: Submitter,
        store: tasks_pb2_grpc.TaskServiceStub,
        poll: float = POLL_SECONDS,
    ) -> None:
        self._book = book
        self._watch = watch
        self._submitter = submitter
        self._store = store
        self._poll = poll

    async def run(self) -> None:
        """Ticks schedules until cancelled."""
        await self._watch.start()
        try:
            await self._tick_forever()
        finally:
            await self._watch.stop()

    async def _tick_forever(self) -> None:
        while True:
            try:
                for schedule in self._watch.schedules():
                    if not schedule.paused and from_timestamp(schedule.next_tick_time) <= now():
                        await self.tick(schedule)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("schedule round failed: %s", exc)
            await asyncio.sleep(self._poll)

    async def tick(self, schedule: schedules_pb2.Schedule) -> None:
        """Handles the due tick(s) of one schedule, in its namespace: the book, the store
        and the submitter all act in the current one, and its tasks belong to it."""
        with in_namespace(schedule.namespace or DEFAULT_NAMESPACE):
            await self._tick(schedule)

    async def _tick(self, schedule: schedules_pb2.Schedule) -> None:
        spec = schedule.spec
        current = now()
        anchor = from_timestamp(schedule.create_time)
        latest, missed = latest_due(spec, from_timestamp(schedule.next_tick_time), current, anchor)
        run = (
            on_time(latest, missed, current)
            or spec.catch_up == schedules_pb2.CATCH_UP_POLICY_RUN_ONCE
        )
        accepted: Accepted | None = None
        overlapped = False
        if run:
            try:
                overlapped = await self._previous_unfinished(schedule)
            except Unknown as exc:
                log.warning("schedule %s: %s; will look again", schedule.id, exc)
                return
            if not overlapped:
                accepted = await self._create(schedule, latest)
        else:
            log.info("schedule %s: ticks missed while down are skipped", schedule.id)

        def record(stored: schedules_pb2.Schedule) -> bool:
            if stored.next_tick_time != schedule.next_tick_time:
                return False  # another scheduler recorded this tick first
            stored.last_tick_time.CopyFrom(timestamp(latest))
            stored.next_tick_time.CopyFrom(timestamp(next_tick(spec, latest, anchor)))
            if overlapped:
                stored.skipped_ticks += 1
            if accepted is not None:
                stored.last_task_id = accepted.task.id
                if not accepted.deduplicated:
                    stored.created_tasks += 1
            return True

        await self._book.change(schedule.id, record)

    async def _previous_unfinished(self, schedule: schedules_pb2.Schedule) -> bool:
        overlap = schedule.spec.overlap
        if overlap == schedules_pb2.OVERLAP_POLICY_ALLOW or not schedule.last_task_id:
            return False
        try:
            response = await self._store.GetTask(
                tasks_pb2.GetTaskRequest(task_id=schedule.last_task_id, omit_payloads=True),
                timeout=10,
                metadata=namespace_metadata(),
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise Unknown(f"the store did not answer ({err.code().name})") from err
        return not is_terminal(response.task.state)

    async def _create(self, schedule: schedules_pb2.Schedule, tick: dt.datetime) -> Accepted | None:
        request = tasks_pb2.SubmitTaskRequest()
        request.CopyFrom(schedule.spec.task)
        request.options.idempotency_key = f"schedule:{schedule.id}:{int(tick.timestamp())}"
        try:
            [accepted] = await self._submitter.submit([(TEMPLATE, request)], schedule.id)
        except ConveyorError as exc:
            log.error("schedule %s could not create its task: %s", schedule.id, exc.message)
            return None
        if not accepted.deduplicated:
            log.info("schedule %s created task %s", schedule.id, accepted.task.id)
        return accepted
