"""Storage that fills: submits are refused at a limit with RESOURCE_EXHAUSTED naming it,
outcomes are still recorded, and the pipeline recovers by itself with nothing lost.

A real nats-server with a small JetStream file storage (``max_file_store``), small stream
limits, and no mocks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from nats.js.errors import APIError

from conveyor import jetstream, subjects
from conveyor._client_errors import error_from_rpc
from conveyor.api.schedules.v1 import schedules_pb2 as P
from conveyor.api.schedules.v1 import schedules_pb2_grpc
from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.config import MIB, CommonSettings, StreamLimits
from conveyor.errors import ResourceExhausted
from conveyor.tasks import duration
from tests.conftest import NatsServer, System
from tests.support import custom_handlers
from tests.support.helpers import wait_terminal

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

STORAGE = "8MB"
"""The server's whole JetStream file storage: what the issue filled."""
LIMITS = StreamLimits(queue_max_bytes=1 * MIB, events_max_bytes=1 * MIB)
PAD = "x" * 8000
"""Each task carries this much input, so a few hundred fill the limits."""


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats")
    server.data_dir.mkdir()
    server.jetstream_options = f"max_file_store: {STORAGE}"
    server.start()
    yield server
    server.stop()


@pytest.fixture
def common(nats_server: NatsServer) -> CommonSettings:
    return CommonSettings(nats_url=nats_server.url, stream_limits=LIMITS)


def gauge_task(**payload: Any) -> S.SubmitTaskRequest:
    struct = struct_pb2.Struct()
    struct.update({"seconds": 0, "pad": PAD, **payload})
    return S.SubmitTaskRequest(custom=S.CustomTaskInput(type="gauge", payload=struct))


async def fill(system: System, until: str, most: int = 500) -> tuple[list[str], str]:
    """Submits tasks until one is refused naming ``until``: the ids accepted, and that
    refusal's message. A refusal naming another limit is waited out, as a client would."""
    accepted: list[str] = []
    for _ in range(most):
        try:
            accepted.append((await system.stub.SubmitTask(gauge_task())).task.id)
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.details()
            if until in (err.details() or ""):
                return accepted, err.details() or ""
            await asyncio.sleep(0.2)
    raise AssertionError(f"{most} submits and none refused at {until}")


async def stream_bytes(system: System, stream: str) -> tuple[int, int]:
    """The stream's messages and bytes now."""
    nc, js = await jetstream.setup(system.common, "test-probe")
    try:
        state = (await js.stream_info(stream)).state
        return state.messages, state.bytes
    finally:
        await jetstream.close(nc)


async def test_a_full_queue_refuses_submits_and_drains_by_itself_with_nothing_lost(
    system: System,
) -> None:
    await system.start_store()
    worker = await system.start_worker(custom_handlers.registry())
    await system.start_gateway()
    await worker.stop()  # no worker: the queue only grows
    system.workers.remove(worker)

    accepted, message = await fill(system, "CONVEYOR_QUEUE_MAX_BYTES")
    assert "queue is full" in message
    assert len(accepted) > 50
    # Refused before anything else broke: EVENTS kept below its size all along (the
    # store removes the events it applied), the queue within its limit (give or take the
    # task in flight when the gateway last read the stream).
    _, queued_bytes = await stream_bytes(system, subjects.STREAM_TASKS)
    _, event_bytes = await stream_bytes(system, subjects.STREAM_EVENTS)
    assert queued_bytes <= LIMITS.queue_max_bytes + len(PAD) + 1000
    assert event_bytes < LIMITS.events_max_bytes
    assert system.gateway is not None
    refused = system.gateway.metrics.registry.get_sample_value(
        "conveyor_submits_refused_total", {"limit": "CONVEYOR_QUEUE_MAX_BYTES", "type": ""}
    )
    assert refused is not None and refused >= 1

    await system.start_worker(custom_handlers.registry(), concurrency=32)  # workers are back
    for task_id in accepted:
        task = await wait_terminal(system.stub, task_id, timeout=120)
        assert task.state == S.TASK_STATE_COMPLETED, task_id
    # Drained: the queue takes tasks again, and they complete.
    again = await accept_soon(system)
    assert (await wait_terminal(system.stub, again)).state == S.TASK_STATE_COMPLETED


async def accept_soon(system: System) -> str:
    """A task accepted once the gateway has seen the queue drained (its counts are read
    at most half a second apart)."""
    async with asyncio.timeout(30):
        while True:
            try:
                return str((await system.stub.SubmitTask(gauge_task())).task.id)
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.details()
                await asyncio.sleep(0.2)


async def test_with_the_store_down_submits_stop_before_events_fill_and_outcomes_are_recorded(
    system: System,
) -> None:
    await system.start_store()
    await system.start_worker(custom_handlers.registry(), concurrency=32)
    await system.start_gateway()
    assert system.store is not None
    address = system.store.address
    await system.store.stop(0.5)  # nothing applies EVENTS now: it only grows

    accepted, message = await fill(system, "CONVEYOR_EVENTS_MAX_BYTES")
    assert "the store is behind" in message
    # The workers still record every outcome (in the part of EVENTS that submits may
    # not use) and so acknowledge every task: the queue drains with the store down.
    async with asyncio.timeout(60):
        while (await stream_bytes(system, subjects.STREAM_TASKS))[0]:
            await asyncio.sleep(0.2)
    _, event_bytes = await stream_bytes(system, subjects.STREAM_EVENTS)
    assert event_bytes <= LIMITS.events_max_bytes

    await system.start_store(listen=address)  # the store is back: it catches up and trims
    for task_id in accepted:
        task = await wait_terminal(system.stub, task_id, timeout=120)
        assert task.state == S.TASK_STATE_COMPLETED, task_id
    again = await accept_soon(system)
    assert (await wait_terminal(system.stub, again)).state == S.TASK_STATE_COMPLETED


async def test_per_type_and_total_task_limits_refuse_only_past_them(
    common: CommonSettings, tmp_path: Path
) -> None:
    limits = replace(LIMITS, queue_max_tasks=5, queue_max_tasks_per_type=3)
    system = System(replace(common, stream_limits=limits), tmp_path)
    try:
        await system.start_store()
        worker = await system.start_worker(custom_handlers.registry())
        await system.start_gateway()
        await worker.stop()
        system.workers.remove(worker)

        for _ in range(3):
            await system.stub.SubmitTask(gauge_task())
        refused = await refusal(system, gauge_task(), "CONVEYOR_QUEUE_MAX_TASKS_PER_TYPE")
        assert "would pass CONVEYOR_QUEUE_MAX_TASKS_PER_TYPE=3 gauge tasks" in refused
        # Another type still has room, up to the total.
        greet = S.SubmitTaskRequest(
            custom=S.CustomTaskInput(type="greet", payload=struct_pb2.Struct())
        )
        greet.custom.payload.update({"name": "x"})
        await system.stub.SubmitTasks(S.SubmitTasksRequest(requests=[greet, greet]))
        refused = await refusal(system, greet, "CONVEYOR_QUEUE_MAX_TASKS")
        assert "would pass CONVEYOR_QUEUE_MAX_TASKS=5 tasks" in refused
        # A batch is refused whole: nothing of it is queued.
        assert (await stream_bytes(system, subjects.STREAM_TASKS))[0] == 5
        assert system.gateway is not None
        sample = system.gateway.metrics.registry.get_sample_value
        per_type = {"limit": "CONVEYOR_QUEUE_MAX_TASKS_PER_TYPE", "type": "gauge"}
        assert sample("conveyor_submits_refused_total", per_type) == 1
        assert sample("conveyor_queue_limit", per_type) == 3
        assert sample("conveyor_queue_limit_used", per_type) == 3

        await system.start_worker(custom_handlers.registry())
        task_id = await accept_soon(system)
        assert (await wait_terminal(system.stub, task_id)).state == S.TASK_STATE_COMPLETED
    finally:
        await system.stop()


async def refusal(system: System, request: S.SubmitTaskRequest, limit: str = "") -> str:
    """The message of a submit refused with RESOURCE_EXHAUSTED (at ``limit``, as a client
    reads it from the status' QuotaFailure)."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.stub.SubmitTask(request)
    error = error_from_rpc(caught.value)
    assert isinstance(error, ResourceExhausted)
    assert error.limit == limit
    return error.message


async def test_storage_filled_by_something_else_refuses_submits_and_recovers_once_freed(
    system: System,
) -> None:
    await system.start_store()
    await system.start_worker(custom_handlers.registry(), concurrency=8)
    await system.start_gateway()
    running = [(await system.stub.SubmitTask(gauge_task(seconds=1.0))).task.id for _ in range(8)]

    nc, js = await jetstream.setup(system.common, "filler")
    try:
        # Another stream takes every byte left: nothing Conveyor publishes is stored now.
        await js.add_stream(name="FILLER", subjects=["filler.>"])
        chunk = b"f" * 64 * 1024
        with pytest.raises(APIError) as full:
            for _ in range(1000):
                await js.publish("filler.x", chunk)
        assert full.value.err_code == 10023  # insufficient resources
        message = await refusal(system, gauge_task())
        assert "insufficient resources" in message
        await asyncio.sleep(1.5)  # the running tasks end and cannot record their outcome
        await js.delete_stream("FILLER")  # storage freed
    finally:
        await jetstream.close(nc)

    # The workers were still trying to record the outcomes: each task completes at its
    # first attempt, none is run again.
    for task_id in running:
        task = await wait_terminal(system.stub, task_id, timeout=90)
        assert task.state == S.TASK_STATE_COMPLETED and task.attempt == 1, task
    again = await accept_soon(system)
    assert (await wait_terminal(system.stub, again)).state == S.TASK_STATE_COMPLETED


async def test_a_schedule_ticking_into_a_full_queue_creates_no_task_until_it_drains(
    common: CommonSettings, tmp_path: Path
) -> None:
    limits = replace(LIMITS, queue_max_tasks_per_type=2)
    system = System(replace(common, stream_limits=limits), tmp_path)
    try:
        await system.start_store()
        worker = await system.start_worker(custom_handlers.registry())
        await system.start_gateway()
        await system.start_scheduler()
        await worker.stop()
        system.workers.remove(worker)
        assert system.channel is not None
        schedules = schedules_pb2_grpc.ScheduleServiceStub(system.channel)
        spec = P.ScheduleSpec(
            interval=duration(1),
            task=gauge_task(),
            overlap=P.OVERLAP_POLICY_ALLOW,
        )
        await schedules.CreateSchedule(P.CreateScheduleRequest(schedule_id="tick", spec=spec))

        async def schedule() -> P.Schedule:
            request = P.GetScheduleRequest(schedule_id="tick")
            found: P.Schedule = (await schedules.GetSchedule(request)).schedule
            return found

        async with asyncio.timeout(30):  # five ticks, each past the first two refused
            while (await schedule()).last_tick_time.seconds < (
                (await schedule()).create_time.seconds + 5
            ):
                await asyncio.sleep(0.2)
        assert (await schedule()).created_tasks == 2

        await system.start_worker(custom_handlers.registry())
        async with asyncio.timeout(30):  # drained: the next ticks create tasks again
            while (await schedule()).created_tasks < 4:
                await asyncio.sleep(0.2)
    finally:
        await system.stop()
