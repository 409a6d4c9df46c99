"""A system whose gateway authenticates with API keys, and a key of every role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conveyor.auth.keys import new_key
from conveyor.auth.principal import Role
from conveyor.client import AsyncClient
from conveyor.config import AuthSettings
from tests.conftest import System


@dataclass
class Secured:
    """The running system, its gateway's addresses, and a key of each role in default."""

    system: System
    admin: str
    keys: dict[Role, str]

    @property
    def addr(self) -> str:
        assert self.system.gateway is not None
        return self.system.gateway.address

    @property
    def http(self) -> str:
        assert self.system.gateway is not None
        return f"http://{self.system.gateway.http.address}"

    def client(self, role: Role | None = None, namespace: str = "") -> AsyncClient:
        key = self.keys[role] if role is not None else ""
        return AsyncClient(self.addr, api_key=key, namespace=namespace)


@pytest.fixture
async def secured(system: System, tmp_path: Path) -> AsyncIterator[Secured]:
    """Store, worker and a gateway with CONVEYOR_AUTH=keys and an admin key file."""
    admin = str(new_key())
    key_file = tmp_path / "admin.key"
    key_file.write_text(admin + "\n")
    await system.start_store()
    await system.start_worker()
    await system.start_gateway(
        http_listen="127.0.0.1:0",
        auth=AuthSettings(methods=("keys",), admin_key_file=str(key_file)),
    )
    secured = Secured(system, admin, {Role.ADMIN: admin})
    async with AsyncClient(secured.addr, api_key=admin) as client:
        for role in (Role.READER, Role.SUBMITTER, Role.OPERATOR):
            created = await client.create_key("default", role.label, description=role.label)
            secured.keys[role] = created.api_key
    yield secured
