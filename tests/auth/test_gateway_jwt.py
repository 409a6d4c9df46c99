"""A gateway taking both API keys and JWTs (CONVEYOR_AUTH=keys,jwt), over gRPC and HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from conveyor.auth.keys import new_key
from conveyor.client import AsyncClient
from conveyor.config import AuthSettings, JwtSettings
from conveyor.errors import PermissionDenied, Unauthenticated
from tests.auth.test_tokens import AUDIENCE, ISSUER, Issuer
from tests.conftest import System

pytestmark = [pytest.mark.integration]


async def test_tokens_and_keys_both_work_at_the_gateway(system: System, tmp_path: Path) -> None:
    issuer = Issuer()
    (tmp_path / "jwks.json").write_text(json.dumps(issuer.jwks()))
    admin = new_key()
    (tmp_path / "admin.key").write_text(str(admin))
    auth = AuthSettings(
        methods=("keys", "jwt"),
        admin_key_file=str(tmp_path / "admin.key"),
        jwt=JwtSettings(issuer=ISSUER, audience=AUDIENCE, jwks=str(tmp_path / "jwks.json")),
    )
    await system.start_store()
    await system.start_worker()
    await system.start_gateway(auth=auth, http_listen="127.0.0.1:0")
    assert system.gateway is not None
    addr = system.gateway.address
    token = issuer.token(conveyor_namespace=None)  # a submitter in default
    async with AsyncClient(addr, api_key=token) as client:
        task = await client.submit_text("from a token")
        assert (await client.wait(task.id, timeout=30)).id == task.id
        with pytest.raises(PermissionDenied, match="operator"):
            await client.pause_queue("text_processing")
    async with AsyncClient(addr, api_key=str(admin)) as client:
        assert await client.list_keys() != []
    async with AsyncClient(addr, api_key=issuer.token(aud="elsewhere")) as client:
        with pytest.raises(Unauthenticated, match="Audience"):
            await client.list()
    base = f"http://{system.gateway.http.address}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        ok = await http.get("/v1/tasks", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        stale = issuer.token(exp=1)
        refused = await http.get("/v1/tasks", headers={"Authorization": f"Bearer {stale}"})
        assert refused.status_code == 401 and "WWW-Authenticate" in refused.headers
