"""The SDK and the CLI send the key and the namespace with every call (watches too), take
them from CONVEYOR_API_KEY / CONVEYOR_NAMESPACE or a key file, and manage keys."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.auth.principal import Role
from conveyor.cli import main as cli_main
from conveyor.client import AsyncClient, Client
from conveyor.config import AuthSettings
from conveyor.errors import PermissionDenied, Unauthenticated
from tests.auth.conftest import Secured
from tests.conftest import System

pytestmark = [pytest.mark.integration]


async def test_the_sdk_sends_its_key_on_every_call_watches_included(secured: Secured) -> None:
    async with AsyncClient(secured.addr, api_key="") as anonymous:
        with pytest.raises(Unauthenticated):
            await anonymous.submit_text("hi")
    async with secured.client(Role.SUBMITTER) as client:
        task = await client.submit_text("hi there")
        states = [update.state async for update in client.watch(task.id)]
        assert states[-1] == tasks_pb2.TASK_STATE_COMPLETED
        assert (await client.get(task.id)).result.text_processing.words == 2
        assert (await client.result(task.id)).text_processing.words == 2  # a stream too
        async with client.clone() as same:  # another channel, the same credentials
            assert (await same.get(task.id)).id == task.id


async def test_the_sdk_reads_the_key_and_namespace_from_the_environment(
    secured: Secured, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_API_KEY", secured.keys[Role.READER])
    async with AsyncClient(secured.addr) as client:
        await client.list()
        with pytest.raises(PermissionDenied, match="submitter"):
            await client.submit_text("hi")
    monkeypatch.setenv("CONVEYOR_NAMESPACE", "team-b")
    async with AsyncClient(secured.addr) as client:
        with pytest.raises(PermissionDenied, match="team-b"):
            await client.list()


async def test_the_blocking_client_takes_a_key(secured: Secured) -> None:
    def use() -> None:  # in a thread: the gateway runs on this test's event loop
        with Client(secured.addr, api_key=secured.keys[Role.OPERATOR]) as client:
            assert {q.type for q in client.list_queues()} >= {"text_processing"}
            with pytest.raises(PermissionDenied):
                client.list_keys()

    await asyncio.to_thread(use)


async def cli(argv: list[str]) -> int:
    return await asyncio.to_thread(cli_main, argv)


async def test_cli_creates_lists_and_revokes_keys(
    secured: Secured,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    addr = ["--addr", secured.addr]
    monkeypatch.setenv("CONVEYOR_API_KEY", secured.admin)
    create = ["auth", "create-key", "--namespace", "team-c", "--role", "submitter"]
    assert await cli([*addr, *create, "--expires", "90d", "--description", "ci"]) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    assert key.startswith("cvk_") and "\n" not in key
    assert "will not be shown again" in err and "team-c" in err

    assert await cli([*addr, "--json", "auth", "list-keys", "--namespace", "team-c"]) == 0
    listed = json.loads(capsys.readouterr().out)["keys"]
    assert len(listed) == 1 and listed[0]["role"] == "ROLE_SUBMITTER"
    assert "expireTime" in listed[0] and key.split("_", 2)[2] not in json.dumps(listed)

    # The new key from a file, in its own namespace.
    monkeypatch.delenv("CONVEYOR_API_KEY")
    key_file = tmp_path / "team-c.key"
    key_file.write_text(key + "\n")
    assert await cli([*addr, "--api-key-file", str(key_file), "list"]) == 0
    capsys.readouterr()
    assert await cli([*addr, "--api-key-file", str(key_file), "--namespace", "x", "list"]) == 1
    assert "not 'x'" in capsys.readouterr().err

    monkeypatch.setenv("CONVEYOR_API_KEY", secured.admin)
    assert await cli([*addr, "auth", "revoke-key", listed[0]["keyId"]]) == 0
    assert "revoked" in capsys.readouterr().err
    monkeypatch.delenv("CONVEYOR_API_KEY")
    assert await cli([*addr, "list", "--api-key-file", str(key_file)]) == 1
    err = capsys.readouterr().err
    assert "revoked" in err and "CONVEYOR_API_KEY" in err
    assert await cli([*addr, "list"]) == 1
    assert "needs credentials" in capsys.readouterr().err


def test_the_cli_takes_no_key_on_its_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--api-key", "cvk_x", "list"]) == 2
    err = capsys.readouterr().err
    assert "CONVEYOR_API_KEY" in err and "cvk_x" not in err
    assert cli_main(["list", "--api-key=cvk_x"]) == 2
    assert "cvk_x" not in capsys.readouterr().err


async def test_a_key_from_new_key_bootstraps_a_gateway(
    system: System, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli(["auth", "new-key"]) == 0  # contacts nothing: no gateway runs yet
    out, err = capsys.readouterr()
    key = out.strip()
    assert "CONVEYOR_ADMIN_KEY_FILE" in err
    assert await cli(["auth", "new-key"]) == 0
    assert capsys.readouterr().out.strip() != key
    key_file = tmp_path / "admin.key"
    key_file.write_text(key + "\n")
    await system.start_store()
    await system.start_gateway(auth=AuthSettings(methods=("keys",), admin_key_file=str(key_file)))
    assert system.gateway is not None
    async with AsyncClient(system.gateway.address, api_key=key) as client:
        created = await client.create_key("team-n", "reader")
        assert created.key.namespace == "team-n"
