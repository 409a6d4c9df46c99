"""Schedules and queues in the SDK: the ScheduleService and QueueService methods.

A mixin of :class:`~conveyor.client.AsyncClient`, sharing its channel (both services are
served at the gateway's address); :class:`~conveyor.client.Client` blocks on it::

    from conveyor.client import Client, text_processing

    with Client() as client:
        template = text_processing("daily digest", ["upper"], labels={"team": "web"})
        client.create_schedule("digest", template, cron="0 7 * * *", time_zone="Europe/Paris")
        client.set_queue_limits("text_processing", max_concurrency=3, max_per_second=10)
        for queue in client.list_queues():
            print(queue.type, queue.paused, list(queue.waiting), queue.in_flight)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from conveyor._client_builders import EnumArg, Seconds, _duration, enum_value
from conveyor.api.queues.v1 import queues_pb2, queues_pb2_grpc
from conveyor.api.schedules.v1 import schedules_pb2, schedules_pb2_grpc
from conveyor.api.tasks.v1 import tasks_pb2

StubFactory = Callable[[Any], Any]
"""A generated ``...ServiceStub`` class: called with a channel, it gives the stub."""


def _short_names(values: Iterable[tuple[str, int]], prefix: str) -> dict[str, int]:
    return {name.removeprefix(prefix).lower(): number for name, number in values if number != 0}


OVERLAP_POLICIES = _short_names(schedules_pb2.OverlapPolicy.items(), "OVERLAP_POLICY_")
"""Short overlap policy names (skip, allow) to their numbers."""
CATCH_UP_POLICIES = _short_names(schedules_pb2.CatchUpPolicy.items(), "CATCH_UP_POLICY_")
"""Short catch-up policy names (skip, run_once) to their numbers."""


def _policy(names: Mapping[str, int], value: EnumArg, prefix: str, what: str) -> int:
    if isinstance(value, str):
        value = value.strip().lower().replace("-", "_").removeprefix(prefix)
    return enum_value(names, value, what)


def schedule_spec(
    task: tasks_pb2.SubmitTaskRequest,
    *,
    cron: str | None = None,
    interval: Seconds | None = None,
    time_zone: str = "",
    overlap: EnumArg = "skip",
    catch_up: EnumArg = "skip",
    description: str = "",
) -> schedules_pb2.ScheduleSpec:
    """A ScheduleSpec: ``task`` (a request from a builder) every tick of ``cron`` or
    ``interval``.

    ``cron`` is a cron expression read in ``time_zone`` (IANA name, default UTC);
    ``interval`` is seconds or a timedelta; exactly one of them is given. ``overlap`` is
    skip or allow, ``catch_up`` skip or run_once. ValueError for a misshapen call; the
    gateway judges the values.

    >>> from conveyor.client import custom
    >>> spec = schedule_spec(custom("report"), interval=90, overlap="allow")
    >>> spec.interval.seconds, spec.overlap == schedules_pb2.OVERLAP_POLICY_ALLOW
    (90, True)
    """
    if (cron is None) == (interval is None):
        raise ValueError("give exactly one of cron and interval")
    if time_zone and cron is None:
        raise ValueError("time_zone applies to cron schedules only")
    spec = schedules_pb2.ScheduleSpec(
        time_zone=time_zone,
        task=task,
        overlap=cast(
            schedules_pb2.OverlapPolicy,
            _policy(OVERLAP_POLICIES, overlap, "overlap_policy_", "overlap policy"),
        ),
        catch_up=cast(
            schedules_pb2.CatchUpPolicy,
            _policy(CATCH_UP_POLICIES, catch_up, "catch_up_policy_", "catch-up policy"),
        ),
        description=description,
    )
    if cron is not None:
        spec.cron = cron
    if interval is not None:
        spec.interval.CopyFrom(_duration(interval))
    return spec


class ScheduleQueueMixin:
    """The ScheduleService and QueueService methods of :class:`AsyncClient`."""

    if TYPE_CHECKING:

        async def _unary(self, method: str, request: Any, factory: StubFactory = ...) -> Any: ...

    # --- schedules -------------------------------------------------------------------------

    async def create_schedule(
        self,
        schedule_id: str,
        request_template: tasks_pb2.SubmitTaskRequest,
        *,
        cron: str | None = None,
        interval: Seconds | None = None,
        time_zone: str = "",
        overlap: EnumArg = "skip",
        catch_up: EnumArg = "skip",
        description: str = "",
    ) -> schedules_pb2.Schedule:
        """Creates a schedule submitting ``request_template`` on every tick; returns it.

        Arguments as in :func:`schedule_spec`. Each tick's task is labelled with the
        schedule id. AlreadyExists when the id is taken.

        >>> from conveyor.client import AsyncClient, custom
        >>> async def example(client: AsyncClient) -> None:
        ...     template = custom("cleanup", {"older_than_days": 30}, priority="low")
        ...     schedule = await client.create_schedule("cleanup", template, interval=3600)
        ...     print(schedule.next_tick_time.ToDatetime())
        """
        spec = schedule_spec(
            request_template,
            cron=cron,
            interval=interval,
            time_zone=time_zone,
            overlap=overlap,
            catch_up=catch_up,
            description=description,
        )
        request = schedules_pb2.CreateScheduleRequest(schedule_id=schedule_id, spec=spec)
        response: schedules_pb2.CreateScheduleResponse = await self._schedules(
            "CreateSchedule", request
        )
        return response.schedule

    async def get_schedule(self, schedule_id: str) -> schedules_pb2.Schedule:
        """The schedule with this id, with its next and last tick; NotFound if none."""
        request = schedules_pb2.GetScheduleRequest(schedule_id=schedule_id)
        response: schedules_pb2.GetScheduleResponse = await self._schedules("GetSchedule", request)
        return response.schedule

    async def list_schedules(self) -> list[schedules_pb2.Schedule]:
        """Every schedule, ordered by id."""
        request = schedules_pb2.ListSchedulesRequest()
        response: schedules_pb2.ListSchedulesResponse = await self._schedules(
            "ListSchedules", request
        )
        return list(response.schedules)

    async def pause_schedule(self, schedule_id: str) -> schedules_pb2.Schedule:
        """Stops a schedule creating tasks until resumed; returns it."""
        request = schedules_pb2.PauseScheduleRequest(schedule_id=schedule_id)
        response: schedules_pb2.PauseScheduleResponse = await self._schedules(
            "PauseSchedule", request
        )
        return response.schedule

    async def resume_schedule(self, schedule_id: str) -> schedules_pb2.Schedule:
        """Resumes a paused schedule from its next tick (ticks while paused are not run)."""
        request = schedules_pb2.ResumeScheduleRequest(schedule_id=schedule_id)
        response: schedules_pb2.ResumeScheduleResponse = await self._schedules(
            "ResumeSchedule", request
        )
        return response.schedule

    async def delete_schedule(self, schedule_id: str) -> None:
        """Deletes a schedule; the tasks it created are kept."""
        request = schedules_pb2.DeleteScheduleRequest(schedule_id=schedule_id)
        await self._schedules("DeleteSchedule", request)

    async def trigger_schedule(self, schedule_id: str) -> tasks_pb2.Task:
        """Creates one task from the schedule now, outside its ticks; returns the task."""
        request = schedules_pb2.TriggerScheduleRequest(schedule_id=schedule_id)
        response: schedules_pb2.TriggerScheduleResponse = await self._schedules(
            "TriggerSchedule", request
        )
        return response.task

    # --- queues ----------------------------------------------------------------------------

    async def list_queues(self) -> list[queues_pb2.Queue]:
        """Every registered task type's queue: paused or not, limits, tasks waiting by
        priority (high, normal, low) and in flight."""
        response: queues_pb2.ListQueuesResponse = await self._queues(
            "ListQueues", queues_pb2.ListQueuesRequest()
        )
        return list(response.queues)

    async def pause_queue(self, task_type: str) -> queues_pb2.Queue:
        """Stops tasks of a type from starting; submissions are still accepted."""
        request = queues_pb2.PauseQueueRequest(type=task_type)
        response: queues_pb2.PauseQueueResponse = await self._queues("PauseQueue", request)
        return response.queue

    async def resume_queue(self, task_type: str) -> queues_pb2.Queue:
        """Starts tasks of a paused type again."""
        request = queues_pb2.ResumeQueueRequest(type=task_type)
        response: queues_pb2.ResumeQueueResponse = await self._queues("ResumeQueue", request)
        return response.queue

    async def set_queue_limits(
        self, task_type: str, *, max_concurrency: int = 0, max_per_second: float = 0.0
    ) -> queues_pb2.Queue:
        """Sets a type's cluster-wide limits, both at once: at most ``max_concurrency``
        tasks running and ``max_per_second`` started per second. 0 removes a limit."""
        limits = queues_pb2.QueueLimits(
            max_concurrency=max_concurrency, max_per_second=max_per_second
        )
        request = queues_pb2.SetQueueLimitsRequest(type=task_type, limits=limits)
        response: queues_pb2.SetQueueLimitsResponse = await self._queues("SetQueueLimits", request)
        return response.queue

    async def _schedules(self, method: str, request: Any) -> Any:
        return await self._unary(method, request, schedules_pb2_grpc.ScheduleServiceStub)

    async def _queues(self, method: str, request: Any) -> Any:
        return await self._unary(method, request, queues_pb2_grpc.QueueServiceStub)
