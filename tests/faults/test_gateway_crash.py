"""The gateway (and the scheduler) die under load: every submit the gateway acknowledged
still completes, and nothing a failed submit left behind stays unfinished."""

from __future__ import annotations

import asyncio

import pytest

from conveyor.tasks import is_terminal
from scheduler.reconcile import LOST_MESSAGE, Reconciler
from tests.faults.conftest import Cluster
from tests.support.checks import Load, audit, list_all
from tests.support.nats_client import jetstream

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def test_gateway_killed_under_load_loses_no_acknowledged_task(cluster: Cluster) -> None:
    await cluster.start(workers=2, scheduler=True)
    # Many small concurrent submits, so some are in flight (between the two publishes,
    # or published but not answered) at the moment of each kill.
    load = Load(cluster.stub, batch=5, loops=6, pause=0.0).start()
    for round_ in range(2):
        await load.until(len(load.accepted) + 300)
        # The scheduler dies too the first time: no task depends on it being up.
        dying = [cluster.gateway, cluster.scheduler] if round_ == 0 else [cluster.gateway]
        for service in dying:
            service.kill()
        await asyncio.sleep(0.5)
        for service in dying:
            service.start()
        await asyncio.gather(*(service.ready() for service in dying))
    await load.until(len(load.accepted) + 300)
    await load.stop()

    assert load.errors, "no submit failed: the kills hit nothing in flight"
    await audit(cluster.stub, cluster.database, cluster.nats_url, load.accepted, timeout=120)

    # A submit that failed may have left a task the store knows but no stream holds (the
    # gateway died between its two publishes). Reconciliation must finish every such task.
    async with jetstream(cluster.nats_url) as js, cluster.store_stub() as store:
        reconciler = Reconciler(js, store, quiet_for=1.0)
        await asyncio.sleep(1.5)
        lost = await reconciler.reconcile_once()
    tasks = await list_all(cluster.stub)
    unfinished = [t for t in tasks if not is_terminal(t.state)]
    assert unfinished == [], unfinished[:3]
    failed_lost = [t for t in tasks if t.error.type == "lost"]
    assert len(failed_lost) == lost
    assert all(t.id not in set(load.accepted) for t in failed_lost)
    assert all(t.error.message == LOST_MESSAGE for t in failed_lost)
