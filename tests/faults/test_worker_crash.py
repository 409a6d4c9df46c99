"""A worker dies mid-task: its tasks go to another worker when their lease runs out."""

from __future__ import annotations

import asyncio

import pytest

from conveyor.api.tasks.v1 import tasks_pb2 as S
from tests.faults.conftest import ACK_WAIT_SECONDS, Cluster
from tests.support.checks import audit, list_all, wait_finished
from tests.support.requests import sleep_request

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

SLEEP_SECONDS = 6.0
"""Longer than the lease: only heartbeats keep a live worker's task from redelivery."""


async def running_on(cluster: Cluster, worker_id: str) -> set[str]:
    running = await list_all(cluster.stub, [S.TASK_STATE_RUNNING])
    return {t.id for t in running if t.worker_id == worker_id}


async def test_worker_killed_mid_task_its_tasks_finish_on_another_worker(
    cluster: Cluster,
) -> None:
    doomed = cluster.add_worker("--concurrency", "4")
    cluster.add_worker("--concurrency", "4")
    await cluster.start()
    assert SLEEP_SECONDS > ACK_WAIT_SECONDS
    submitted = await cluster.stub.SubmitTasks(
        S.SubmitTasksRequest(requests=[sleep_request(SLEEP_SECONDS) for _ in range(12)])
    )
    ids = [t.id for t in submitted.tasks]
    async with asyncio.timeout(30):
        while len(caught := await running_on(cluster, "worker-1")) < 4:
            await asyncio.sleep(0.1)
    doomed.kill()

    result = await audit(cluster.stub, cluster.database, cluster.nats_url, ids, timeout=90)

    redelivered = 0
    for task_id in ids:
        task = result.tasks[task_id]
        kinds = result.kinds(task_id)
        started_on_dead = any(k == "started" and w == "worker-1" for k, _, w in kinds)
        finished_on_dead = any(k == "completed" and w == "worker-1" for k, _, w in kinds)
        if started_on_dead and not finished_on_dead:
            # Run again by the survivor, as attempt 2: the lost attempt counts.
            redelivered += 1
            assert (task.attempt, task.worker_id) == (2, "worker-2"), kinds
            assert [k for k, _, _ in kinds].count("started") == 2, kinds
        else:
            # Never redelivered although it ran longer than the lease: heartbeats held it.
            assert task.attempt == 1, kinds
    assert redelivered >= 1, f"none of {sorted(caught)} was caught mid-task"


async def test_worker_killed_during_the_last_attempt_fails_the_task_as_worker_lost(
    cluster: Cluster,
) -> None:
    doomed = cluster.add_worker()
    await cluster.start(workers=1)
    request = sleep_request(60)
    request.options.max_attempts = 1
    task_id = (await cluster.stub.SubmitTask(request)).task.id
    async with asyncio.timeout(30):
        while task_id not in await running_on(cluster, "worker-1"):
            await asyncio.sleep(0.1)
    doomed.kill()
    survivor = cluster.add_worker()
    survivor.start()
    await survivor.ready()

    # Redelivered past its only attempt: failed without running again, not left RUNNING.
    task = (await wait_finished(cluster.stub, [task_id], timeout=60))[task_id]
    assert task.state == S.TASK_STATE_FAILED
    assert (task.error.type, task.attempt) == ("worker_lost", 1)
