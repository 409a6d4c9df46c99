"""The services' NATS connection: a lost server is a warning, closing one's own is not."""

from __future__ import annotations

import asyncio
import logging

import pytest

from conveyor import jetstream
from conveyor.config import CommonSettings
from tests.conftest import NatsServer


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def test_closing_the_connection_is_not_a_warning(
    common: CommonSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="conveyor.jetstream")
    nc = await jetstream.connect(common, "closing")
    await jetstream.close(nc)
    assert warnings_of(caplog) == []
    assert "nats connection closed" in caplog.messages


async def test_a_lost_server_is_a_warning(
    common: CommonSettings, nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    nc = await jetstream.connect(common, "losing")
    try:
        nats_server.kill()
        async with asyncio.timeout(10):
            while "nats disconnected" not in warnings_of(caplog):
                await asyncio.sleep(0.05)
    finally:
        nats_server.start()
        await jetstream.close(nc)


async def test_a_backoff_ends_when_nats_is_back(
    common: CommonSettings, nats_server: NatsServer
) -> None:
    nc = await jetstream.connect(common, "backing-off")
    try:
        nats_server.kill()
        waiting = asyncio.create_task(jetstream.backoff(nc, 600.0))
        await asyncio.sleep(1.0)
        assert not waiting.done()  # NATS is away: the failure's delay holds
        nats_server.start()
        async with asyncio.timeout(30):  # back: the wait ends long before its 600 s
            await waiting
    finally:
        if nats_server.process is None or nats_server.process.poll() is not None:
            nats_server.start()
        await jetstream.close(nc)
