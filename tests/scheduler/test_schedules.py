"""Periodic schedules against real servers: ticks, two schedulers, overlap and catch-up."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from conveyor.api.schedules.v1 import schedules_pb2 as P
from conveyor.api.schedules.v1 import schedules_pb2_grpc
from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.client import custom_result
from conveyor.tasks import duration
from tests.conftest import System
from tests.support import custom_handlers
from tests.support.helpers import wait_terminal

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def template(task_type: str, **payload: Any) -> S.SubmitTaskRequest:
    struct = struct_pb2.Struct()
    struct.update(payload)
    return S.SubmitTaskRequest(custom=S.CustomTaskInput(type=task_type, payload=struct))


async def start(system: System, schedulers: int = 1) -> schedules_pb2_grpc.ScheduleServiceStub:
    await system.start_store()
    await system.start_worker(custom_handlers.registry(), shutdown_grace_seconds=1.0)
    await system.start_gateway()
    for _ in range(schedulers):
        await system.start_scheduler()
    assert system.channel is not None
    return schedules_pb2_grpc.ScheduleServiceStub(system.channel)


async def tasks_of(system: System, schedule_id: str) -> list[S.Task]:
    listed = await system.stub.ListTasks(
        S.ListTasksRequest(labels={"schedule": schedule_id}, page_size=1000)
    )
    return list(listed.tasks)


async def test_interval_schedule_creates_one_task_per_tick_with_two_schedulers(
    system: System,
) -> None:
    schedules = await start(system, schedulers=2)
    created = await schedules.CreateSchedule(
        P.CreateScheduleRequest(
            schedule_id="every-second",
            spec=P.ScheduleSpec(interval=duration(1), task=template("greet", name="tick")),
        )
    )
    assert created.schedule.next_tick_time.seconds > 0
    await asyncio.sleep(4.5)
    await schedules.PauseSchedule(P.PauseScheduleRequest(schedule_id="every-second"))
    await asyncio.sleep(0.5)
    schedule = (
        await schedules.GetSchedule(P.GetScheduleRequest(schedule_id="every-second"))
    ).schedule
    tasks = await tasks_of(system, "every-second")
    assert 3 <= len(tasks) <= 5
    assert len(tasks) == schedule.created_tasks  # one task per tick, not one per scheduler
    assert all(t.schedule_id == "every-second" for t in tasks)
    for task in tasks:
        done = await wait_terminal(system.stub, task.id)
        assert done.state == S.TASK_STATE_COMPLETED
        assert custom_result(done.result)["greeting"] == "hello tick"
    await asyncio.sleep(2)  # paused: nothing more
    assert len(await tasks_of(system, "every-second")) == len(tasks)


async def test_cron_schedule_in_a_time_zone_and_trigger(system: System) -> None:
    schedules = await start(system)
    await schedules.CreateSchedule(
        P.CreateScheduleRequest(
            schedule_id="cron-paris",
            spec=P.ScheduleSpec(
                cron="* * * * * */2", time_zone="Europe/Paris", task=template("greet", name="c")
            ),
        )
    )
    triggered = await schedules.TriggerSchedule(P.TriggerScheduleRequest(schedule_id="cron-paris"))
    assert triggered.task.schedule_id == "cron-paris"
    await asyncio.sleep(4.5)
    tasks = await tasks_of(system, "cron-paris")
    assert 2 <= len(tasks) <= 5  # the trigger plus a tick every two seconds
    listed = await schedules.ListSchedules(P.ListSchedulesRequest())
    assert [s.id for s in listed.schedules] == ["cron-paris"]
    await schedules.DeleteSchedule(P.DeleteScheduleRequest(schedule_id="cron-paris"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await schedules.GetSchedule(P.GetScheduleRequest(schedule_id="cron-paris"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_overlap_skip_waits_for_the_previous_run(system: System) -> None:
    schedules = await start(system)
    await schedules.CreateSchedule(
        P.CreateScheduleRequest(
            schedule_id="slow",
            spec=P.ScheduleSpec(
                interval=duration(1),
                task=template("sleeper", seconds=3.5),
                overlap=P.OVERLAP_POLICY_SKIP,
            ),
        )
    )
    await asyncio.sleep(4.2)
    schedule = (await schedules.GetSchedule(P.GetScheduleRequest(schedule_id="slow"))).schedule
    assert schedule.created_tasks == 1 and schedule.skipped_ticks >= 2
    assert len(await tasks_of(system, "slow")) == 1


async def test_catch_up_after_downtime_skip_or_run_once(system: System) -> None:
    await system.start_store()
    await system.start_worker(custom_handlers.registry(), shutdown_grace_seconds=1.0)
    await system.start_gateway()
    assert system.channel is not None
    schedules = schedules_pb2_grpc.ScheduleServiceStub(system.channel)
    for name, policy in (
        ("skip-missed", P.CATCH_UP_POLICY_SKIP),
        ("run-once", P.CATCH_UP_POLICY_RUN_ONCE),
    ):
        await schedules.CreateSchedule(
            P.CreateScheduleRequest(
                schedule_id=name,
                spec=P.ScheduleSpec(
                    interval=duration(4), task=template("greet", name=name), catch_up=policy
                ),
            )
        )
    await asyncio.sleep(9.5)  # two ticks pass with no scheduler running
    await system.start_scheduler()
    await asyncio.sleep(1.0)  # the next tick is more than a second away
    assert len(await tasks_of(system, "skip-missed")) == 0
    assert len(await tasks_of(system, "run-once")) == 1


async def test_invalid_schedules_name_the_field(system: System) -> None:
    schedules = await start(system)
    cases = {
        "spec.cron": P.ScheduleSpec(cron="every tuesday", task=template("greet", name="x")),
        "spec.time_zone": P.ScheduleSpec(
            cron="* * * * *", time_zone="Mars/Olympus", task=template("greet", name="x")
        ),
        "spec.interval": P.ScheduleSpec(interval=duration(0.1), task=template("greet", name="x")),
        "spec.task.custom.type": P.ScheduleSpec(interval=duration(5), task=template("nobody")),
        "spec.timing": P.ScheduleSpec(task=template("greet", name="x")),
        "spec.99": P.ScheduleSpec(interval=duration(5), task=template("greet", name="x")),
        "spec.task.custom.99": P.ScheduleSpec(interval=duration(5), task=template("greet")),
    }
    cases["spec.99"].MergeFromString(b"\x98\x06\x01")  # field 99, which it does not declare
    cases["spec.task.custom.99"].task.custom.MergeFromString(b"\x98\x06\x01")
    for field, spec in cases.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await schedules.CreateSchedule(P.CreateScheduleRequest(schedule_id="bad", spec=spec))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in (caught.value.details() or ""), (field, caught.value.details())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await schedules.CreateSchedule(
            P.CreateScheduleRequest(
                schedule_id="Bad Id!",
                spec=P.ScheduleSpec(interval=duration(5), task=template("greet", name="x")),
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
