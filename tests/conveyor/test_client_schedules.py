"""The SDK's schedule and queue methods against fake servicers on a real gRPC server."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator

import pytest

from conveyor.api.schedules.v1 import schedules_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.client import AsyncClient, Client, custom, schedule_spec, text_processing
from conveyor.errors import AlreadyExists, FieldViolation, InvalidArgument, NotFound
from tests.conveyor.control_fakes import TASK_ID, Gateway, serve


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    with serve() as fakes:
        yield fakes


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(gateway.addr, timeout=5) as c:
        yield c


async def test_create_schedule_sends_the_spec(gateway: Gateway, client: AsyncClient) -> None:
    template = text_processing("hi", ["slug"], priority="low", labels={"team": "web"})
    schedule = await client.create_schedule(
        "slugs",
        template,
        interval=dt.timedelta(minutes=5),
        overlap="OVERLAP_POLICY_ALLOW",
        catch_up="run-once",
        description="every five minutes",
    )
    assert schedule.id == "slugs"
    [request] = gateway.schedules.requests
    assert isinstance(request, schedules_pb2.CreateScheduleRequest)
    assert request.spec.interval.ToSeconds() == 300
    assert request.spec.overlap == schedules_pb2.OVERLAP_POLICY_ALLOW
    assert request.spec.catch_up == schedules_pb2.CATCH_UP_POLICY_RUN_ONCE
    assert request.spec.task == template
    assert request.spec.description == "every five minutes"


async def test_every_service_shares_one_channel(client: AsyncClient) -> None:
    assert (await client.get(TASK_ID)).state == tasks_pb2.TASK_STATE_COMPLETED
    assert [s.id for s in await client.list_schedules()] == ["cleanup", "digest"]
    assert [q.type for q in await client.list_queues()] == ["image_processing", "text_processing"]
    channel = client._channel
    assert (await client.get_schedule("digest")).created_tasks == 12
    assert client._channel is channel
    await client.close()  # closing drops every stub; the next call opens a new channel
    assert (await client.resume_queue("image_processing")).paused is False
    assert client._channel is not channel


async def test_errors_map_to_conveyor_errors(client: AsyncClient) -> None:
    with pytest.raises(NotFound, match="schedule 'nope' does not exist"):
        await client.trigger_schedule("nope")
    with pytest.raises(AlreadyExists):
        await client.create_schedule("digest", custom("x"), cron="@daily")
    with pytest.raises(InvalidArgument) as caught:
        await client.create_schedule("Bad Id", custom("x"), cron="@daily", time_zone="Nowhere")
    assert [v.field for v in caught.value.violations] == ["schedule_id", "spec.time_zone"]
    with pytest.raises(InvalidArgument) as caught:
        await client.set_queue_limits("image_processing", max_per_second=float("inf"))
    assert caught.value.violations == [
        FieldViolation("limits.max_per_second", "must be a number from 0 to 1e+06")
    ]
    with pytest.raises(NotFound):
        await client.pause_queue("video")


def test_schedule_spec_refuses_misshapen_calls() -> None:
    with pytest.raises(ValueError, match="exactly one of cron and interval"):
        schedule_spec(custom("x"))
    with pytest.raises(ValueError, match="exactly one of cron and interval"):
        schedule_spec(custom("x"), cron="@daily", interval=60)
    with pytest.raises(ValueError, match="time_zone applies to cron"):
        schedule_spec(custom("x"), interval=60, time_zone="UTC")
    with pytest.raises(ValueError, match="choose from skip, allow"):
        schedule_spec(custom("x"), cron="@daily", overlap="sometimes")
    spec = schedule_spec(custom("x"), cron="@daily", catch_up=2)
    assert spec.catch_up == schedules_pb2.CATCH_UP_POLICY_RUN_ONCE
    assert spec.overlap == schedules_pb2.OVERLAP_POLICY_SKIP


def test_sync_client(gateway: Gateway) -> None:
    # The fake server runs in its own threads, so a blocking client can call it from here.
    with Client(gateway.addr, timeout=5) as c:
        created = c.create_schedule("hourly", custom("report"), cron="0 * * * *", time_zone="UTC")
        assert created.spec.cron == "0 * * * *"
        assert c.pause_schedule("hourly").paused
        assert not c.resume_schedule("hourly").paused
        task = c.trigger_schedule("hourly")
        assert (task.type, task.schedule_id) == ("report", "hourly")
        assert c.get_schedule("hourly").last_task_id == TASK_ID
        c.delete_schedule("hourly")
        assert [s.id for s in c.list_schedules()] == ["cleanup", "digest"]
        queue = c.set_queue_limits("text_processing", max_concurrency=4, max_per_second=1.5)
        assert (queue.limits.max_concurrency, queue.limits.max_per_second) == (4, 1.5)
        assert c.pause_queue("text_processing").paused
        assert [q.paused for q in c.list_queues()] == [True, True]
        with pytest.raises(NotFound):
            c.get_schedule("hourly")
