"""Periodic schedules as kept in the ``conveyor_schedules`` KV bucket.

The gateway (create, pause, trigger...) and the scheduler (ticks) both change schedules;
every change is a compare-and-set on the schedule's revision, so two schedulers, or a
scheduler and an operator, never overwrite each other's updates.

A schedule belongs to the namespace it was created in, and the book reads and writes
only the current namespace's (conveyor.auth.principal): two namespaces may each have a
schedule of the same id, and another namespace's is not found. Its key is its id in the
default namespace (as schedules created before namespaces are stored, which belong to
it) and ``<namespace>.<id>`` elsewhere: neither a namespace nor an id has a dot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from conveyor import buckets
from conveyor.api.schedules.v1 import schedules_pb2
from conveyor.auth.principal import DEFAULT_NAMESPACE, current_namespace
from conveyor.errors import AlreadyExists, NotFound, Unavailable
from conveyor.lifecycle import cancel_and_wait

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
        if self._task is not None:
            await cancel_and_wait(self._task)

    def schedules(self) -> list[schedules_pb2.Schedule]:
        """The schedules of every namespace as last seen, by key."""
        return [self._schedules[key] for key in sorted(self._schedules)]

    async def _follow(self) -> None:
        await buckets.follow(self._kv, self._changed)

    async def _changed(self, key: str, value: bytes | None) -> None:
        if value is None:
            self._schedules.pop(key, None)
            return
        try:
            self._schedules[key] = _with_namespace(schedules_pb2.Schedule.FromString(value))
        except Exception:
            log.error("schedule %r is not a Schedule; ignored", key)


class ScheduleBook:
    """Reads and compare-and-set writes of schedules."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def create(self, schedule: schedules_pb2.Schedule) -> None:
        """Adds a schedule to the current namespace (which it is stamped with);
        AlreadyExists when the id is taken there."""
        schedule.namespace = current_namespace()
        try:
            await self._kv.create(schedule_key(schedule.id), schedule.SerializeToString())
        except KeyWrongLastSequenceError:
            raise AlreadyExists(f"schedule {schedule.id!r} exists already") from None

    async def get(self, schedule_id: str) -> tuple[schedules_pb2.Schedule, int]:
        """The current namespace's schedule and its revision; NotFound when there is none."""
        try:
            entry = await self._kv.get(schedule_key(schedule_id))
        except KeyNotFoundError:
            raise NotFound(f"schedule {schedule_id!r} does not exist") from None
        if not entry.value:
            raise NotFound(f"schedule {schedule_id!r} does not exist")
        schedule = _with_namespace(schedules_pb2.Schedule.FromString(entry.value))
        if schedule.namespace != current_namespace():  # a key only its namespace makes
            raise NotFound(f"schedule {schedule_id!r} does not exist")
        return schedule, int(entry.revision or 0)

    async def all(self) -> list[schedules_pb2.Schedule]:
        """Every schedule of the current namespace, by id."""
        keys = await buckets.keys(self._kv)
        prefix = schedule_key("")
        ids = [key[len(prefix) :] for key in keys if key.startswith(prefix)]
        schedules = []
        for schedule_id in sorted(i for i in ids if "." not in i):
            try:
                schedules.append((await self.get(schedule_id))[0])
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
                key = schedule_key(schedule_id)
                await self._kv.update(key, schedule.SerializeToString(), last=revision)
                return schedule
            except KeyWrongLastSequenceError:
                continue
        raise Unavailable(f"schedule {schedule_id!r} keeps changing; try again")

    async def delete(self, schedule_id: str) -> None:
        """Removes a schedule; NotFound when there is none."""
        await self.get(schedule_id)
        await self._kv.delete(schedule_key(schedule_id))


def schedule_key(schedule_id: str) -> str:
    """The bucket key of the current namespace's schedule ``schedule_id``."""
    namespace = current_namespace()
    return schedule_id if namespace == DEFAULT_NAMESPACE else f"{namespace}.{schedule_id}"


def _with_namespace(schedule: schedules_pb2.Schedule) -> schedules_pb2.Schedule:
    """The schedule with its namespace said: one stored before namespaces has none and
    belongs to the default namespace."""
    if not schedule.namespace:
        schedule.namespace = DEFAULT_NAMESPACE
    return schedule
