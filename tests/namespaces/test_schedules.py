"""Schedules belong to the namespace they were created in: another namespace neither sees
nor changes them (NOT_FOUND), may use the same id for its own, and a schedule's ticks
create tasks in its namespace (against real servers, with the scheduler running)."""

from __future__ import annotations

import asyncio

import pytest

from conveyor import subjects
from conveyor.api.schedules.v1 import schedules_pb2 as P
from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.client import custom_result
from conveyor.tasks import duration, now, timestamp
from tests.conftest import System
from tests.namespaces.support import A, B, meta, not_found, wait_finished
from tests.scheduler.test_schedules import start
from tests.support.custom_system import custom
from tests.support.nats_client import jetstream

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def spec(seconds: float, name: str) -> P.ScheduleSpec:
    return P.ScheduleSpec(interval=duration(seconds), task=custom("greet", name=name))


async def test_another_namespace_neither_sees_nor_changes_a_schedule(system: System) -> None:
    schedules = await start(system, schedulers=0)
    create = P.CreateScheduleRequest(schedule_id="nightly", spec=spec(3600, "a"))
    created = (await schedules.CreateSchedule(create, metadata=meta(A))).schedule
    assert created.namespace == A

    sid = "nightly"
    for call in (
        schedules.GetSchedule(P.GetScheduleRequest(schedule_id=sid), metadata=meta(B)),
        schedules.PauseSchedule(P.PauseScheduleRequest(schedule_id=sid), metadata=meta(B)),
        schedules.ResumeSchedule(P.ResumeScheduleRequest(schedule_id=sid), metadata=meta(B)),
        schedules.TriggerSchedule(P.TriggerScheduleRequest(schedule_id=sid), metadata=meta(B)),
        schedules.DeleteSchedule(P.DeleteScheduleRequest(schedule_id=sid), metadata=meta(B)),
        schedules.GetSchedule(P.GetScheduleRequest(schedule_id=sid)),  # default
    ):
        await not_found(call)
    listed = await schedules.ListSchedules(P.ListSchedulesRequest(), metadata=meta(B))
    assert list(listed.schedules) == []

    # The same id is free in another namespace, and the two stay apart.
    create_b = P.CreateScheduleRequest(schedule_id=sid, spec=spec(7200, "b"))
    assert (await schedules.CreateSchedule(create_b, metadata=meta(B))).schedule.namespace == B
    await schedules.PauseSchedule(P.PauseScheduleRequest(schedule_id=sid), metadata=meta(B))
    mine = await schedules.GetSchedule(P.GetScheduleRequest(schedule_id=sid), metadata=meta(A))
    assert not mine.schedule.paused and mine.schedule.spec.interval.seconds == 3600

    # A trigger creates the task in the schedule's namespace.
    triggered = await schedules.TriggerSchedule(
        P.TriggerScheduleRequest(schedule_id=sid), metadata=meta(A)
    )
    assert triggered.task.namespace == A
    done = await wait_finished(system.stub, A, triggered.task.id)
    assert custom_result(done.result)["greeting"] == "hello a"
    await not_found(system.stub.GetTask(S.GetTaskRequest(task_id=done.id), metadata=meta(B)))

    await schedules.DeleteSchedule(P.DeleteScheduleRequest(schedule_id=sid), metadata=meta(A))
    left = await schedules.ListSchedules(P.ListSchedulesRequest(), metadata=meta(B))
    assert [(s.id, s.namespace) for s in left.schedules] == [(sid, B)]


async def test_ticks_create_tasks_in_the_schedules_namespace(system: System) -> None:
    schedules = await start(system, schedulers=1)
    slow = P.ScheduleSpec(
        interval=duration(1),
        task=custom("sleeper", seconds=3.5),
        overlap=P.OVERLAP_POLICY_SKIP,
    )
    create = P.CreateScheduleRequest(schedule_id="slow", spec=slow)
    await schedules.CreateSchedule(create, metadata=meta(A))
    await asyncio.sleep(4.2)
    schedule = (
        await schedules.GetSchedule(P.GetScheduleRequest(schedule_id="slow"), metadata=meta(A))
    ).schedule
    # The scheduler found the previous run unfinished, looking in the schedule's namespace.
    assert schedule.created_tasks == 1 and schedule.skipped_ticks >= 2
    request = S.ListTasksRequest(labels={"schedule": "slow"})
    listed = (await system.stub.ListTasks(request, metadata=meta(A))).tasks
    assert [(t.id, t.namespace) for t in listed] == [(schedule.last_task_id, A)]
    assert list((await system.stub.ListTasks(request)).tasks) == []  # none in default


async def test_a_schedule_stored_before_namespaces_is_the_default_namespaces(
    system: System,
) -> None:
    schedules = await start(system, schedulers=0)
    old = P.Schedule(id="legacy", spec=spec(3600, "old"), create_time=timestamp(now()))
    async with jetstream(system.common.nats_url) as js:
        kv = await js.key_value(subjects.KV_SCHEDULES)
        await kv.put("legacy", old.SerializeToString())  # as stored then: no namespace
    got = await schedules.GetSchedule(P.GetScheduleRequest(schedule_id="legacy"))
    assert (got.schedule.id, got.schedule.namespace) == ("legacy", "default")
    listed = await schedules.ListSchedules(P.ListSchedulesRequest())
    assert [s.id for s in listed.schedules] == ["legacy"]
    await not_found(
        schedules.GetSchedule(P.GetScheduleRequest(schedule_id="legacy"), metadata=meta(A))
    )
    triggered = await schedules.TriggerSchedule(P.TriggerScheduleRequest(schedule_id="legacy"))
    assert triggered.task.namespace == "default"
