"""`conveyor dev`'s NATS identities: a user per role with a random password in a file
only its owner reads, given to each service by file, never by value."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from conveyor import natsauth, subjects
from conveyor.config import CommonSettings, ConfigError, GatewaySettings
from conveyor.dev import parse_args, plan


def test_dev_gives_each_service_its_roles_password_file_and_never_the_password(
    tmp_path: Path,
) -> None:
    args = parse_args(["--data-dir", str(tmp_path)])
    children, _ = plan(args, {})
    roles = {
        "store": subjects.STORE,
        "worker-1": subjects.WORKER,
        "worker-2": subjects.WORKER,
        "scheduler": subjects.SCHEDULER,
        "gateway": subjects.GATEWAY,
    }
    for child in children:
        if child.name == "nats-server":
            continue
        role = roles[child.name]
        password_file = Path(child.env["CONVEYOR_NATS_PASSWORD_FILE"])
        assert child.env["CONVEYOR_NATS_USER"] == role
        assert password_file == tmp_path / "credentials" / f"{role}.password"
        password = password_file.read_text()
        assert len(password) >= 40
        assert password not in " ".join(child.argv) + " ".join(child.env.values())
    for path in [*(tmp_path / "credentials").iterdir(), tmp_path / "nats-server.conf"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    passwords = {p.read_text() for p in (tmp_path / "credentials").iterdir()}
    assert len(passwords) == len(natsauth.ROLES)
    # Made once: a restart keeps them (the server's config is written from them again).
    plan(args, {})
    assert {p.read_text() for p in (tmp_path / "credentials").iterdir()} == passwords


def test_with_an_existing_nats_server_dev_passes_no_credentials(tmp_path: Path) -> None:
    args = parse_args(["--data-dir", str(tmp_path)])
    children, _ = plan(args, {"CONVEYOR_NATS_URL": "nats://127.0.0.1:4999"})
    assert all("CONVEYOR_NATS_USER" not in child.env for child in children)


def test_a_user_needs_its_password_file_and_files_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NATS_PASSWORD_FILE"):
        GatewaySettings.from_env({"CONVEYOR_NATS_USER": "gateway"})
    with pytest.raises(ConfigError, match="readable file"):
        GatewaySettings.from_env(
            {"CONVEYOR_NATS_USER": "gateway", "CONVEYOR_NATS_PASSWORD_FILE": str(tmp_path / "x")}
        )
    secret = tmp_path / "gateway.password"
    secret.write_text("s3cret\n")
    settings = GatewaySettings.from_env(
        {"CONVEYOR_NATS_USER": "gateway", "CONVEYOR_NATS_PASSWORD_FILE": str(secret)}
    )
    assert settings.common.nats_authenticated
    assert not CommonSettings().nats_authenticated


def test_every_role_may_use_only_its_own_inbox_and_event_subjects() -> None:
    for role in natsauth.ROLES:
        granted = natsauth.permissions(role)
        assert f"{natsauth.inbox_prefix(role)}.>" in granted.subscribe
        assert not any(s.startswith("_INBOX.") or s == ">" for s in granted.subscribe)
        events = [s for s in granted.publish if s.startswith(subjects.EVENTS_PREFIX)]
        assert events == [subjects.event_filter(role)]
    assert subjects.CANCEL_SUBJECT in natsauth.permissions(subjects.STORE).publish
    assert subjects.CANCEL_SUBJECT not in natsauth.permissions(subjects.WORKER).publish
    with pytest.raises(ValueError, match="unknown role"):
        natsauth.permissions("admin")
