"""nats-server (file storage) dies under load and restarts: every acknowledged task
completes, and every service reconnects by itself."""

from __future__ import annotations

import asyncio

import pytest

from conveyor.tasks import is_terminal
from scheduler.reconcile import Reconciler
from tests.conftest import NatsServer
from tests.faults.conftest import Cluster
from tests.support.checks import Load, audit, list_all
from tests.support.nats_client import jetstream

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def test_nats_server_killed_under_load_loses_no_acknowledged_task(
    cluster: Cluster, nats_file_server: NatsServer
) -> None:
    await cluster.start(workers=2)
    load = Load(cluster.stub, batch=5, loops=4, pause=0.0).start()
    for _ in range(2):
        await load.until(len(load.accepted) + 300)
        nats_file_server.kill()
        await asyncio.sleep(1.0)
        nats_file_server.start()
        # Submits work again once the gateway has reconnected.
        await load.until(len(load.accepted) + 100, timeout=60)
    await load.until(len(load.accepted) + 300)
    await load.stop()

    assert cluster.dead() == {}
    await audit(cluster.stub, cluster.database, cluster.nats_url, load.accepted, timeout=120)

    async with jetstream(cluster.nats_url) as js, cluster.store_stub() as store:
        reconciler = Reconciler(js, store, quiet_for=1.0)
        await asyncio.sleep(1.5)
        await reconciler.reconcile_once()
    unfinished = [t for t in await list_all(cluster.stub) if not is_terminal(t.state)]
    assert unfinished == [], unfinished[:3]
