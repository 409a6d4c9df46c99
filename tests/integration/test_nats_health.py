"""Every service's gRPC health follows its NATS connection: NOT_SERVING while NATS is
unreachable (a dead server, or a frozen one that only pings reveal), SERVING again once
reconnected; the liveness name stays SERVING throughout."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conveyor.config import CommonSettings
from conveyor.server import LIVENESS_SERVICE, Server
from tests.conftest import NatsServer, System

pytestmark = pytest.mark.integration

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
PING_INTERVAL = 0.3
"""Three unanswered pings (about a second) mark a frozen server's connection dead."""


class Probes:
    """Each service's health endpoint, as Kubernetes probes see it."""

    def __init__(self, servers: dict[str, Server]) -> None:
        self.channels = {name: grpc.aio.insecure_channel(s.address) for name, s in servers.items()}
        self.stubs = {n: health_pb2_grpc.HealthStub(c) for n, c in self.channels.items()}

    async def statuses(self, service: str = "") -> dict[str, int]:
        request = health_pb2.HealthCheckRequest(service=service)
        return {
            name: (await stub.Check(request, timeout=5)).status for name, stub in self.stubs.items()
        }

    async def all_become(self, status: int, within: float = 20.0) -> None:
        async with asyncio.timeout(within):
            while set((await self.statuses()).values()) != {status}:
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()


@pytest.fixture
async def probes(common: CommonSettings, tmp_path: Path) -> AsyncIterator[Probes]:
    system = System(replace(common, nats_ping_interval_seconds=PING_INTERVAL), tmp_path)
    try:
        await system.start()
        await system.start_scheduler()
        assert system.store and system.gateway and system.scheduler
        servers = {
            "store": system.store.server,
            "gateway": system.gateway.server,
            "scheduler": system.scheduler.server,
            "worker": system.workers[0].server,
        }
        checked = Probes({name: s for name, s in servers.items() if s is not None})
        assert len(checked.stubs) == 4
        yield checked
        await checked.close()
    finally:
        await asyncio.wait_for(system.stop(), 60)


async def test_health_is_not_serving_while_nats_is_frozen_and_serving_after(
    nats_server: NatsServer, probes: Probes
) -> None:
    await probes.all_become(SERVING)
    assert nats_server.process is not None
    pid = nats_server.process.pid
    # Frozen, its connections stay open: only unanswered pings tell it is gone.
    os.kill(pid, signal.SIGSTOP)
    try:
        await probes.all_become(NOT_SERVING)
        assert set((await probes.statuses(LIVENESS_SERVICE)).values()) == {SERVING}
    finally:
        os.kill(pid, signal.SIGCONT)
    await probes.all_become(SERVING)


async def test_health_is_not_serving_while_nats_is_down_and_serving_after_restart(
    nats_server: NatsServer, probes: Probes
) -> None:
    await probes.all_become(SERVING)
    nats_server.kill()
    try:
        await probes.all_become(NOT_SERVING)
        assert set((await probes.statuses(LIVENESS_SERVICE)).values()) == {SERVING}
    finally:
        nats_server.start()
    await probes.all_become(SERVING)
