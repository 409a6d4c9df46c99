"""The HTTP door checks the same credentials and roles as gRPC: 401 with a Bearer
challenge, 403 for a role too low or another namespace, and the probes and the API's
documents open to all."""

from __future__ import annotations

import httpx
import pytest

from conveyor.auth.principal import Role
from tests.auth.conftest import Secured

pytestmark = [pytest.mark.integration]

SUBMIT = {"textProcessing": {"text": "hello"}}


def bearer(secured: Secured, role: Role, namespace: str = "") -> dict[str, str]:
    headers = {"Authorization": f"Bearer {secured.keys[role]}"}
    return headers | ({"conveyor-namespace": namespace} if namespace else {})


async def test_calls_without_valid_credentials_get_401_with_a_challenge(
    secured: Secured,
) -> None:
    async with httpx.AsyncClient(base_url=secured.http, timeout=30) as http:
        for headers in ({}, {"Authorization": "Bearer cvk_000000000000_" + "y" * 43}):
            response = await http.post("/v1/tasks", json=SUBMIT, headers=headers)
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert response.json()["code"] == 16  # UNAUTHENTICATED
        basic = await http.get("/v1/tasks", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert basic.status_code == 401
        assert (await http.get("/v1/tasks/00000000000000000000000000:watch")).status_code == 401


async def test_a_role_too_low_or_another_namespace_gets_403(secured: Secured) -> None:
    async with httpx.AsyncClient(base_url=secured.http, timeout=30) as http:
        reader = bearer(secured, Role.READER)
        response = await http.post("/v1/tasks", json=SUBMIT, headers=reader)
        assert response.status_code == 403 and "needs the submitter role" in response.text
        assert (await http.post("/v1/keys", json={}, headers=reader)).status_code == 403
        elsewhere = bearer(secured, Role.SUBMITTER, "team-b")
        assert (await http.get("/v1/tasks", headers=elsewhere)).status_code == 403
        # The quick-start's alias is the same method: the same check.
        alias = await http.post("/tasks/", json={"task_type": "text_processing"}, headers=reader)
        assert alias.status_code == 403


async def test_the_right_role_is_served_and_watches_stream(secured: Secured) -> None:
    async with httpx.AsyncClient(base_url=secured.http, timeout=30) as http:
        submitted = await http.post(
            "/v1/tasks", json=SUBMIT, headers=bearer(secured, Role.SUBMITTER)
        )
        assert submitted.status_code == 200, submitted.text
        task_id = submitted.json()["task"]["id"]
        async with secured.client(Role.READER) as client:
            await client.wait(task_id, timeout=30)
        reader = bearer(secured, Role.READER)
        got = await http.get(f"/v1/tasks/{task_id}", headers=reader)
        assert got.status_code == 200 and got.json()["task"]["state"] == "TASK_STATE_COMPLETED"
        async with http.stream("GET", f"/v1/tasks/{task_id}:watch", headers=reader) as watch:
            assert watch.status_code == 200
            body = b"".join([chunk async for chunk in watch.aiter_bytes()])
        assert b"TASK_STATE_COMPLETED" in body and b"event: end" in body


async def test_admins_manage_keys_over_http(secured: Secured) -> None:
    async with httpx.AsyncClient(base_url=secured.http, timeout=30) as http:
        admin = bearer(secured, Role.ADMIN)
        made = await http.post(
            "/v1/keys", json={"namespace": "team-h", "role": "ROLE_READER"}, headers=admin
        )
        assert made.status_code == 200, made.text
        key, key_id = made.json()["apiKey"], made.json()["key"]["keyId"]
        listed = await http.get("/v1/keys", params={"namespace": "team-h"}, headers=admin)
        assert [k["keyId"] for k in listed.json()["keys"]] == [key_id]
        assert key not in listed.text and key.rsplit("_", 1)[-1] not in listed.text
        own = {"Authorization": f"Bearer {key}"}
        assert (await http.get("/v1/tasks", headers=own)).status_code == 200
        revoked = await http.post(f"/v1/keys/{key_id}:revoke", json={}, headers=admin)
        assert revoked.status_code == 200 and revoked.json()["key"]["revoked"] is True
        refused = await http.get("/v1/tasks", headers=own)
        assert refused.status_code == 401 and "revoked" in refused.text


async def test_probes_and_documents_are_public(secured: Secured) -> None:
    async with httpx.AsyncClient(base_url=secured.http, timeout=30) as http:
        for path in ("/healthz", "/readyz", "/openapi.json", "/docs", "/", "/console/app.js"):
            assert (await http.get(path)).status_code == 200, path
        document = (await http.get("/openapi.json")).json()
        assert "/v1/keys" in document["paths"]


async def test_whoami_tells_any_caller_its_role_and_namespace(secured: Secured) -> None:
    async with httpx.AsyncClient(base_url=secured.http, timeout=30) as http:
        assert (await http.get("/v1/whoami")).status_code == 401
        reader = await http.get("/v1/whoami", headers=bearer(secured, Role.READER))
        assert reader.status_code == 200, reader.text
        assert reader.json()["role"] == "ROLE_READER"
        assert reader.json()["namespace"] == "default"
        assert reader.json()["subject"] and "cvk_" not in reader.text
        admin = await http.get("/v1/whoami", headers=bearer(secured, Role.ADMIN, "team-w"))
        assert admin.json()["role"] == "ROLE_ADMIN" and admin.json()["namespace"] == "team-w"


async def test_a_reader_watches_its_namespaces_tasks_and_no_other(secured: Secured) -> None:
    async with httpx.AsyncClient(base_url=secured.http, timeout=30) as http:
        assert (await http.get("/v1/tasks:watch")).status_code == 401
        elsewhere = bearer(secured, Role.READER, "team-b")
        assert (await http.get("/v1/tasks:watch", headers=elsewhere)).status_code == 403
        reader = bearer(secured, Role.READER)
        query = "/v1/tasks:watch?states=TASK_STATE_COMPLETED"
        async with http.stream("GET", query, headers=reader) as watch:
            assert watch.status_code == 200
            lines = watch.aiter_lines()
            assert await anext(lines) == ": watching"
            submitted = await http.post(
                "/v1/tasks", json=SUBMIT, headers=bearer(secured, Role.SUBMITTER)
            )
            task_id = submitted.json()["task"]["id"]
            async for line in lines:
                if line.startswith("data: "):
                    assert task_id in line and "TASK_STATE_COMPLETED" in line
                    break
