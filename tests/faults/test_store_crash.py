"""The store dies under load and comes back: it catches up and nothing is lost."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from conveyor.api.tasks.v1 import tasks_pb2 as S
from tests.faults.conftest import Cluster
from tests.support.checks import Load, audit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def test_store_killed_under_load_catches_up_and_loses_nothing(cluster: Cluster) -> None:
    await cluster.start(workers=2)
    load = Load(cluster.stub).start()
    for freeze_first in (False, True):
        await load.until(len(load.accepted) + 300)
        if freeze_first:
            # Stopped mid-step, the store holds events it fetched (or that the server
            # pushed to its open pull request) but has not committed; then it dies. This
            # pins the worst moment of a crash instead of hoping to hit it.
            cluster.store.freeze()
            await asyncio.sleep(1.5)
        cluster.store.kill()
        # Submits and work go on without the store: they only need JetStream. Reads fail.
        with pytest.raises(grpc.aio.AioRpcError) as read:
            await cluster.stub.GetTask(S.GetTaskRequest(task_id=load.accepted[0]), timeout=15)
        assert read.value.code() == grpc.StatusCode.UNAVAILABLE
        await load.until(len(load.accepted) + 200)
        cluster.store.start()
        await cluster.store.ready()
    await load.until(len(load.accepted) + 200)
    await load.stop()

    assert not load.errors, load.errors
    await audit(cluster.stub, cluster.database, cluster.nats_url, load.accepted, timeout=120)
