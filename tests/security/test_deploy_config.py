"""deploy/ carries the users and permissions conveyor.natsauth generates, and nats-server
runs with them: each role connects with its password from the environment, nobody
without one."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import nats
import pytest
import yaml  # type: ignore[import-untyped]

from conveyor import jetstream, natsauth, subjects
from conveyor.config import CommonSettings
from tests.conftest import free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def k8s_nats_config() -> dict[str, str]:
    """The files of the nats-single component's ConfigMap."""
    [config_map] = [
        doc
        for doc in yaml.safe_load_all(
            (DEPLOY / "kubernetes/components/nats-single/nats.yaml").read_text()
        )
        if doc and doc["kind"] == "ConfigMap"
    ]
    return dict(config_map["data"])


def test_the_nats_authorization_files_are_the_generated_one() -> None:
    text = (DEPLOY / "nats/authorization.conf").read_text()
    body = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))
    assert body == natsauth.env_authorization()
    assert k8s_nats_config()["authorization.conf"] == natsauth.env_authorization()
    for config in (
        (DEPLOY / "nats/nats-server.conf").read_text(),
        k8s_nats_config()["nats-server.conf"],
    ):
        assert "include ./authorization.conf" in config


def test_the_helm_values_carry_the_generated_users_and_their_secrets() -> None:
    values = yaml.safe_load((DEPLOY / "kubernetes/nats-helm-values.yaml").read_text())
    generated = natsauth.helm_values()
    assert (
        values["config"]["merge"]["authorization"] == generated["config"]["merge"]["authorization"]
    )
    env = values["container"]["env"]  # also holds settings of its own (GOMEMLIMIT)
    assert {name: env.get(name) for name in generated["container"]["env"]} == generated[
        "container"
    ]["env"]


@pytest.mark.integration
@pytest.mark.parametrize("where", ["compose", "kubernetes"])
async def test_nats_server_runs_the_deploy_config_with_its_users(
    where: str, tmp_path: Path
) -> None:
    if where == "compose":
        files = {
            "nats.conf": (DEPLOY / "nats/nats-server.conf").read_text(),
            "authorization.conf": (DEPLOY / "nats/authorization.conf").read_text(),
        }
    else:
        k8s = k8s_nats_config()
        files = {
            "nats.conf": k8s["nats-server.conf"],
            "authorization.conf": k8s["authorization.conf"],
        }
    for name, text in files.items():
        # An include is found relative to the including file.
        text = text.replace("/data", str(tmp_path / "js")).replace("/var/run/nats", str(tmp_path))
        (tmp_path / name).write_text(text)
    config = tmp_path / "nats.conf"
    passwords = {role: f"secret-of-{role}" for role in natsauth.ROLES}
    env = {**os.environ, **{natsauth.password_variable(r): p for r, p in passwords.items()}}
    port = free_port()
    server = subprocess.Popen(
        [
            "nats-server",
            "-c",
            str(config),
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-m",
            str(free_port()),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        password_file = tmp_path / "store.password"
        password_file.write_text(passwords[subjects.STORE])
        settings = CommonSettings(
            nats_url=f"nats://127.0.0.1:{port}",
            nats_user=subjects.STORE,
            nats_password_file=str(password_file),
        )
        nc, js = await jetstream.setup(settings, "deploy-check", role=subjects.STORE)
        try:
            info = await js.stream_info(subjects.STREAM_EVENTS)
            assert info.config.name == subjects.STREAM_EVENTS
        finally:
            await jetstream.close(nc)
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await nats.connect(f"nats://127.0.0.1:{port}", allow_reconnect=False, connect_timeout=2)
    finally:
        server.terminate()
        server.wait(timeout=10)
