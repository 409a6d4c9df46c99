"""A worker's gRPC health tells whether it consumes: checked on its real health port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.context import TaskContext
from conveyor.registry import Registry
from conveyor.server import LIVENESS_SERVICE
from tests.conftest import NatsServer, System
from tests.support.helpers import wait_terminal
from worker.app import Worker

pytestmark = pytest.mark.integration

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def nap(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(float(payload["seconds"]))
    return {}


class Health:
    """The worker's grpc.health.v1 service, as a Kubernetes probe sees it."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = health_pb2_grpc.HealthStub(channel)

    async def status(self, service: str = "") -> int:
        request = health_pb2.HealthCheckRequest(service=service)
        response = await self._stub.Check(request, timeout=5)
        status: int = response.status
        return status

    async def becomes(self, status: int, within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while await self.status() != status:
                await asyncio.sleep(0.05)


def stalled_loops(worker: Worker) -> float | None:
    return worker.metrics.registry.get_sample_value("conveyor_worker_stalled_consume_loops")


@pytest.fixture
async def checked(system: System) -> AsyncIterator[tuple[Worker, Health]]:
    registry = Registry()
    registry.task("nap")(nap)
    worker = await system.start_worker(registry, concurrency=1, shutdown_grace_seconds=1.0)
    worker.watchdog.interval = 0.05
    worker.watchdog.stall_after = 1.0
    assert worker.server is not None
    async with grpc.aio.insecure_channel(worker.server.address) as channel:
        yield worker, Health(channel)


async def test_a_worker_whose_consume_loop_died_is_not_serving_until_it_fetches(
    checked: tuple[Worker, Health],
) -> None:
    worker, health = checked
    assert await health.status() == SERVING
    worker._loops[0].cancel()
    await health.becomes(NOT_SERVING)
    assert stalled_loops(worker) == 1
    # A loop fetching again (here: a new one) brings the worker back.
    worker._loops[0] = asyncio.create_task(worker.consumers[0].run(worker._stopping))
    await health.becomes(SERVING)
    assert stalled_loops(worker) == 0


async def test_a_worker_waiting_out_a_nats_outage_stays_alive(
    nats_server: NatsServer, checked: tuple[Worker, Health]
) -> None:
    # Its loops keep ending their rounds (nats-py holds the pull requests until it is
    # connected again, and they expire), so it does not look stuck: a liveness probe
    # would otherwise restart every worker of a cluster whose NATS is away. It is not
    # ready meanwhile: it cannot take tasks.
    _, health = checked
    nats_server.stop()
    try:
        await health.becomes(NOT_SERVING)
        for _ in range(30):  # 3 s, three times stall_after
            assert await health.status(LIVENESS_SERVICE) == SERVING
            await asyncio.sleep(0.1)
    finally:
        nats_server.start()
    await health.becomes(SERVING)
    assert await health.status(LIVENESS_SERVICE) == SERVING


async def test_a_worker_busy_with_long_tasks_stays_serving(
    system: System, checked: tuple[Worker, Health]
) -> None:
    worker, health = checked
    await system.start_store()
    await system.start_gateway()
    payload = struct_pb2.Struct()
    payload.update({"seconds": 2.5})
    submitted = await system.stub.SubmitTask(
        S.SubmitTaskRequest(custom=S.CustomTaskInput(type="nap", payload=payload))
    )
    async with asyncio.timeout(20):
        while worker.slots.in_flight < worker.slots.limit:
            await asyncio.sleep(0.02)
    # Its one slot is taken for 2.5 s, more than twice stall_after: no loop fetches, on
    # purpose, and the worker must not look stuck.
    while worker.slots.in_flight:
        assert await health.status() == SERVING
        await asyncio.sleep(0.1)
    task = await wait_terminal(system.stub, submitted.task.id)
    assert task.state == S.TASK_STATE_COMPLETED
    assert await health.status() == SERVING
