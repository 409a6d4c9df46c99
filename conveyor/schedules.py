"""Periodic schedules as kept in the ``conveyor_schedules`` KV bucket.

The gateway (create, pause, trigger...) and the scheduler (ticks) both change schedules;
every change is a compare-and-set on the schedule's revision, so two schedulers, or a
scheduler and an operator, never overwrite each other's updates.
"""

from __future__ import annotations

from collections.abc import Callable

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

from conveyor.api.schedules.v1 import schedules_pb2
from conveyor.errors import AlreadyExists, NotFound, Unavailable

CAS_ATTEMPTS = 20


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
        try:
            keys = await self._kv.keys()
        except NoKeysError:
            return []
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
