"""Periodic schedules as kept in the ``conveyor_schedules`` KV bucket.

The gateway (create, pause, trigger...) and the scheduler (ticks) both change schedules;
every change is a compare-and-set on the schedule's revision, so two schedulers, or a
scheduler and an operator, never overwrite each other's updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from conveyor import buckets
from conveyor.api.schedules.v1 import schedules_pb2
from conveyor.errors import AlreadyExists, NotFound, Unavailable

log = logging.getLogger(__name__)

CAS_ATTEMPTS = 20


class ScheduleWatch:
    """Every schedule, kept current by one KV watch: the scheduler looks at them several
    times a second, which must not cost a listing (a consumer) each time."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self._schedules: dict[str, schedules_pb2.Schedule] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name="schedule-watch")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def schedules(self) -> list[schedules_pb2.Schedule]:
        """The schedules as last seen, by id."""
        return [self._schedules[key] for key in sorted(self._schedules)]

    async def _follow(self) -> None:
        await buckets.follow(self._kv, self._changed)

    async def _changed(self, key: str, value: bytes | None) -> None:
        if value is None:
            self._schedules.pop(key, None)
            return
        try:
            self._schedules[key] = schedules_pb2.Schedule.FromString(value)
        except Exception:
            log.error("schedule %r is not a Schedule; ignored", key)


class ScheduleBook:
    """Reads and compare-and-set writes of schedules."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def create(self, schedule: schedules_pb2.Schedule) -> None:
        """Adds a schedule; AlreadyExists when the id is taken."""
        try:
            await self._kv.create(schedule.id, schedule.SerializeToString())
        except KeyWrongLastSequenceError:
            raise AlreadyExists(f"schedule {schedule.id!r} exists already") from None

    async def get(self, schedule_id: str) -> tuple[schedules_pb2.Schedule, int]:
        """The schedule and its revision; NotFound when there is none."""
        try:
            entry = await self._kv.get(schedule_id)
        except KeyNotFoundError:
            raise NotFound(f"schedule {schedule_id!r} does not exist") from None
        if not entry.value:
            raise NotFound(f"schedule {schedule_id!r} does not exist")
        return schedules_pb2.Schedule.FromString(entry.value), int(entry.revision or 0)

    async def all(self) -> list[schedules_pb2.Schedule]:
        """Every schedule, by id."""
        keys = await buckets.keys(self._kv)
        schedules = []
        for key in sorted(keys):
            try:
                schedules.append((await self.get(key))[0])
            except NotFound:
                continue  # deleted meanwhile
        return schedules

    async def change(
        self, schedule_id: str, change: Callable[[schedules_pb2.Schedule], bool]
    ) -> schedules_pb2.Schedule:
        """Applies ``change`` (which returns False to write nothing) by compare-and-set,
        retried on a concurrent change; returns the schedule as written."""
        for _ in range(CAS_ATTEMPTS):
            schedule, revision = await self.get(schedule_id)
            if not change(schedule):
                return schedule
            try:
                await self._kv.update(schedule_id, schedule.SerializeToString(), last=revision)
                return schedule
            except KeyWrongLastSequenceError:
                continue
        raise Unavailable(f"schedule {schedule_id!r} keeps changing; try again")

    async def delete(self, schedule_id: str) -> None:
        """Removes a schedule; NotFound when there is none."""
        await self.get(schedule_id)
        await self._kv.delete(schedule_id)
