"""The system started with the NATS users and permissions of ``conveyor dev``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conveyor import subjects
from tests.conftest import NatsServer, System, role_settings


def violations(server: NatsServer) -> list[str]:
    """The permission violations nats-server logged (every refused publish or
    subscribe of any client)."""
    if not server.log_file.exists():
        return []
    return [line for line in server.log_file.read_text().splitlines() if "Violation" in line]


@pytest.fixture
async def secure_system(secure_nats: NatsServer, tmp_path: Path) -> AsyncIterator[System]:
    """The system, not yet started, each service with its own role's credentials."""
    running = System(role_settings(secure_nats, subjects.STORE), tmp_path)
    running.roles = {role: role_settings(secure_nats, role) for role in subjects.PUBLISHERS}
    yield running
    await asyncio.wait_for(running.stop(), 60)
