"""Flow control across workers: paused queues, concurrency and rate limits, dedicated
pools, and cancelling a delayed task."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from conveyor.api.queues.v1 import queues_pb2 as Q
from conveyor.api.queues.v1 import queues_pb2_grpc
from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.tasks import duration
from tests.conftest import System
from tests.support import custom_handlers
from tests.support.custom_handlers import Calls, Gauge
from tests.support.helpers import wait_terminal

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def custom(
    task_type: str, options: S.TaskOptions | None = None, **payload: Any
) -> S.SubmitTaskRequest:
    struct = struct_pb2.Struct()
    struct.update(payload)
    return S.SubmitTaskRequest(
        custom=S.CustomTaskInput(type=task_type, payload=struct), options=options
    )


async def start(
    system: System, workers: int = 1, **options: Any
) -> queues_pb2_grpc.QueueServiceStub:
    await system.start_store()
    for index in range(workers):
        await system.start_worker(
            custom_handlers.registry(),
            shutdown_grace_seconds=1.0,
            worker_id=f"worker-{index + 1}",
            **options,
        )
    await system.start_gateway()
    assert system.channel is not None
    return queues_pb2_grpc.QueueServiceStub(system.channel)


async def test_a_paused_type_accepts_tasks_but_starts_none_until_resumed(system: System) -> None:
    queues = await start(system)
    paused = await queues.PauseQueue(Q.PauseQueueRequest(type="greet"))
    assert paused.queue.paused
    await asyncio.sleep(1.5)  # workers see the change through their KV watch
    submitted = await system.stub.SubmitTask(custom("greet", name="later"))
    await asyncio.sleep(2.0)
    task = (await system.stub.GetTask(S.GetTaskRequest(task_id=submitted.task.id))).task
    assert task.state == S.TASK_STATE_PENDING
    listed = await queues.ListQueues(Q.ListQueuesRequest())
    greet = next(q for q in listed.queues if q.type == "greet")
    assert greet.paused and list(greet.waiting) == [0, 1, 0]
    await queues.ResumeQueue(Q.ResumeQueueRequest(type="greet"))
    assert (await wait_terminal(system.stub, submitted.task.id)).state == S.TASK_STATE_COMPLETED


async def test_cluster_wide_concurrency_limit_holds_across_two_workers(system: System) -> None:
    queues = await start(system, workers=2)
    await queues.SetQueueLimits(
        Q.SetQueueLimitsRequest(type="gauge", limits=Q.QueueLimits(max_concurrency=3))
    )
    await asyncio.sleep(1.5)
    Gauge.running, Gauge.peak = 0, 0
    ids = [(await system.stub.SubmitTask(custom("gauge", seconds=0.4))).task.id for _ in range(12)]
    workers = set()
    for task_id in ids:
        task = await wait_terminal(system.stub, task_id)
        assert task.state == S.TASK_STATE_COMPLETED
        workers.add(task.worker_id)
    assert Gauge.peak == 3  # never more, and the limit is actually used
    assert len(workers) == 2  # both workers took part


async def test_cluster_wide_rate_limit_holds_across_two_workers(system: System) -> None:
    queues = await start(system, workers=2)
    await queues.SetQueueLimits(
        Q.SetQueueLimitsRequest(type="gauge", limits=Q.QueueLimits(max_per_second=4))
    )
    await asyncio.sleep(1.5)
    Gauge.starts = []
    ids = [(await system.stub.SubmitTask(custom("gauge", seconds=0))).task.id for _ in range(14)]
    for task_id in ids:
        assert (await wait_terminal(system.stub, task_id)).state == S.TASK_STATE_COMPLETED
    starts = sorted(Gauge.starts)
    # A bucket of 4 tokens refilled at 4/s: 14 starts need at least (14 - 4) / 4 = 2.5 s.
    assert starts[-1] - starts[0] >= 2.0  # (start times lag token grants a little)
    # Tokens are granted before the fetch, so each of the two workers may hold one granted
    # token while its fetch waits for a task: starts can bunch by up to two beyond the
    # bucket's own bound of burst + rate = 8 per second.
    for i, first in enumerate(starts):
        in_one_second = [s for s in starts[i:] if s - first < 1.0]
        assert len(in_one_second) <= 4 + 4 + 2, "more than burst + rate in one second"


async def test_invalid_limits_and_unknown_types_are_refused(system: System) -> None:
    queues = await start(system)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await queues.SetQueueLimits(
            Q.SetQueueLimitsRequest(type="gauge", limits=Q.QueueLimits(max_per_second=-1))
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await queues.PauseQueue(Q.PauseQueueRequest(type="nobody_serves_this"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_dedicated_pool_serves_only_its_types(system: System) -> None:
    await system.start_store()
    general = await system.start_worker(
        custom_handlers.registry(), types=("greet",), worker_id="pool-general"
    )
    dedicated = await system.start_worker(
        custom_handlers.registry(), types=("gauge",), worker_id="pool-gauge"
    )
    await system.start_gateway()
    assert general.types == ["greet"] and dedicated.types == ["gauge"]
    greet = await system.stub.SubmitTask(custom("greet", name="pool"))
    gauge = await system.stub.SubmitTask(custom("gauge", seconds=0))
    assert (await wait_terminal(system.stub, greet.task.id)).worker_id == "pool-general"
    assert (await wait_terminal(system.stub, gauge.task.id)).worker_id == "pool-gauge"


async def test_cancel_a_scheduled_task_means_it_never_runs(system: System) -> None:
    await start(system)
    Calls.never = 0
    submitted = await system.stub.SubmitTask(custom("never", S.TaskOptions(delay=duration(2))))
    assert submitted.task.state == S.TASK_STATE_SCHEDULED
    cancelled = await system.stub.CancelTask(S.CancelTaskRequest(task_id=submitted.task.id))
    assert cancelled.task.state == S.TASK_STATE_CANCELLED
    await asyncio.sleep(3.5)  # past its time
    assert Calls.never == 0
    task = (await system.stub.GetTask(S.GetTaskRequest(task_id=submitted.task.id))).task
    assert task.state == S.TASK_STATE_CANCELLED and task.attempt == 0
