"""SIGTERM to a worker: tasks that finish within the grace period finish there, the rest
are handed back at once and finish on another worker, long before their lease would end."""

from __future__ import annotations

import asyncio
import time

import pytest

from conveyor.api.tasks.v1 import tasks_pb2 as S
from tests.conftest import NatsServer
from tests.faults.conftest import Cluster
from tests.support.checks import audit
from tests.support.requests import sleep_request

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

GRACE = 6.0
LEASE = 60.0
"""Far longer than the test waits: a task that is back in time was handed back, not
redelivered after its lease ran out."""


async def test_sigterm_finishes_short_tasks_and_hands_back_the_rest(cluster: Cluster) -> None:
    stopping = cluster.add_worker(
        "--concurrency",
        "4",
        CONVEYOR_SHUTDOWN_GRACE_SECONDS=str(GRACE),
        CONVEYOR_ACK_WAIT_SECONDS=str(LEASE),
    )
    await cluster.start(workers=1)
    short = await cluster.stub.SubmitTask(sleep_request(GRACE / 2 + 2))
    long = await cluster.stub.SubmitTask(sleep_request(300, again_seconds=0.5))
    ids = [short.task.id, long.task.id]
    async with asyncio.timeout(30):
        while True:
            tasks = [(await cluster.stub.GetTask(S.GetTaskRequest(task_id=i))).task for i in ids]
            if all(t.state == S.TASK_STATE_RUNNING for t in tasks):
                break
            await asyncio.sleep(0.1)
    successor = cluster.add_worker(CONVEYOR_ACK_WAIT_SECONDS=str(LEASE))
    successor.start()
    await successor.ready()
    short_now = (await cluster.stub.GetTask(S.GetTaskRequest(task_id=short.task.id))).task
    assert short_now.state == S.TASK_STATE_RUNNING, "too slow a start-up to test the grace"

    began = time.monotonic()
    stopping.terminate()
    assert await asyncio.to_thread(stopping.wait, GRACE + 15) == 0

    result = await audit(cluster.stub, cluster.database, cluster.nats_url, ids, timeout=30)
    assert time.monotonic() - began < LEASE / 2
    finished_in_grace = result.tasks[short.task.id]
    assert (finished_in_grace.attempt, finished_in_grace.worker_id) == (1, "worker-1")
    handed_back = result.tasks[long.task.id]
    assert (handed_back.attempt, handed_back.worker_id) == (2, "worker-2")


async def test_sigterm_after_nats_server_is_gone_every_service_exits_cleanly(
    cluster: Cluster, nats_file_server: NatsServer
) -> None:
    await cluster.start(workers=1, scheduler=True)
    [worker] = cluster.workers
    nats_file_server.kill()
    async with asyncio.timeout(30):
        # Reconnecting for a while, with requests of its fetch loops buffered meanwhile.
        while worker.log_tail().count("Connection refused") < 3:
            await asyncio.sleep(0.1)
    for service in cluster.services:
        service.terminate()
        assert service.wait(timeout=30) == 0, service.log_tail()
        assert "Traceback" not in service.log_tail()
