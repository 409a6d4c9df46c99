"""A burst of 10,000 tasks over two worker processes: the counts are exact."""

from __future__ import annotations

import asyncio

import pytest

from conveyor.api.tasks.v1 import tasks_pb2 as S
from tests.faults.conftest import Cluster
from tests.support.checks import audit, list_all
from tests.support.requests import text_request

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TOTAL = 10_000
BATCH = 500


async def test_ten_thousand_tasks_complete_exactly_once(cluster: Cluster) -> None:
    for _ in range(2):
        # Deep enough to keep the worker's handler processes busy between fetch rounds.
        cluster.add_worker("--concurrency", "64")
    await cluster.start()
    before = {t.id for t in await list_all(cluster.stub)}  # the start-up probe

    batches = [
        S.SubmitTasksRequest(requests=[text_request(start + i) for i in range(BATCH)])
        for start in range(0, TOTAL, BATCH)
    ]
    responses = await asyncio.gather(
        *(cluster.stub.SubmitTasks(batch, timeout=60) for batch in batches)
    )
    accepted = [task.id for response in responses for task in response.tasks]

    assert len(accepted) == len(set(accepted)) == TOTAL

    result = await audit(cluster.stub, cluster.database, cluster.nats_url, accepted, timeout=240)

    completed = await list_all(cluster.stub, [S.TASK_STATE_COMPLETED])
    ids = [t.id for t in completed if t.id not in before]
    assert len(ids) == len(set(ids)) == TOTAL
    assert set(ids) == set(accepted)
    unfinished_or_failed = [
        S.TASK_STATE_PENDING,
        S.TASK_STATE_SCHEDULED,
        S.TASK_STATE_RUNNING,
        S.TASK_STATE_RETRYING,
        S.TASK_STATE_FAILED,
        S.TASK_STATE_CANCELLED,
    ]
    assert await list_all(cluster.stub, unfinished_or_failed) == []
    workers = {result.tasks[i].worker_id for i in accepted}
    assert workers == {"worker-1", "worker-2"}
