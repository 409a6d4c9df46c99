"""A service refuses to listen off loopback without TLS (and authentication, and mutual TLS
on the store), naming what to set, unless CONVEYOR_INSECURE=1 says so."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conveyor.config import (
    ConfigError,
    GatewaySettings,
    SchedulerSettings,
    StoreSettings,
    WorkerSettings,
)
from conveyor.exposure import Listener, is_loopback, refuse_insecure
from gateway.app import listeners as gateway_listeners
from scheduler.app import listeners as scheduler_listeners
from store.app import listeners as store_listeners
from tests.conftest import NatsServer
from tests.support.tls import Pki
from worker.app import listeners as worker_listeners


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.make(tmp_path / "pki")


def tls_env(pki: Pki, name: str, mutual: bool = False) -> dict[str, str]:
    tls = pki.settings(name, mutual)
    env = {"CONVEYOR_TLS_CERT": tls.cert, "CONVEYOR_TLS_KEY": tls.key}
    if mutual:
        env["CONVEYOR_TLS_CLIENT_CA"] = tls.client_ca
    return env


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("127.8.9.1:1", True),
        ("[::1]:50051", True),
        ("localhost:8000", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        (":50051", False),
        ("10.1.2.3:50051", False),
        ("gateway.example.com:443", False),
    ],
)
def test_only_loopback_addresses_count_as_loopback(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_loopback_needs_nothing_so_conveyor_dev_stays_zero_config() -> None:
    defaults = [
        *gateway_listeners(GatewaySettings.from_env({})),
        *store_listeners(StoreSettings.from_env({})),
        *scheduler_listeners(SchedulerSettings.from_env({})),
        *worker_listeners(WorkerSettings.from_env({})),
    ]
    assert len(defaults) == 9
    assert refuse_insecure(defaults, insecure=False) == []


def test_the_gateway_off_loopback_needs_tls_and_authentication(pki: Pki) -> None:
    env = {"CONVEYOR_GATEWAY_LISTEN": "0.0.0.0:50051", "CONVEYOR_HTTP_LISTEN": "off"}
    with pytest.raises(ConfigError) as refused:
        refuse_insecure(gateway_listeners(GatewaySettings.from_env(env)), insecure=False)
    (problem, hint) = refused.value.problems
    assert problem.startswith("CONVEYOR_GATEWAY_LISTEN=0.0.0.0:50051 is reachable")
    assert "CONVEYOR_TLS_CERT and CONVEYOR_TLS_KEY" in problem
    assert "CONVEYOR_AUTH" in problem
    assert "CONVEYOR_INSECURE=1" in hint
    # TLS alone is not enough for the public door.
    with pytest.raises(ConfigError, match="CONVEYOR_AUTH") as refused:
        settings = GatewaySettings.from_env({**env, **tls_env(pki, "gateway")})
        refuse_insecure(gateway_listeners(settings), insecure=False)
    assert "CONVEYOR_TLS_CERT" not in str(refused.value)
    secure = {**env, **tls_env(pki, "gateway"), "CONVEYOR_AUTH": "keys"}
    assert refuse_insecure(gateway_listeners(GatewaySettings.from_env(secure)), False) == []


def test_the_http_door_and_metrics_are_doors_too(pki: Pki) -> None:
    env = {
        **tls_env(pki, "gateway"),
        "CONVEYOR_AUTH": "keys",
        "CONVEYOR_HTTP_LISTEN": "0.0.0.0:8000",
        "CONVEYOR_METRICS_LISTEN": "0.0.0.0:9091",
    }
    assert refuse_insecure(gateway_listeners(GatewaySettings.from_env(env)), False) == []
    plain = {k: v for k, v in env.items() if not k.startswith("CONVEYOR_TLS")}
    with pytest.raises(ConfigError) as refused:
        refuse_insecure(gateway_listeners(GatewaySettings.from_env(plain)), False)
    assert [p.split("=")[0] for p in refused.value.problems[:-1]] == [
        "CONVEYOR_HTTP_LISTEN",
        "CONVEYOR_METRICS_LISTEN",
    ]


def test_the_store_off_loopback_needs_mutual_tls(pki: Pki) -> None:
    env = {"CONVEYOR_STORE_LISTEN": "0.0.0.0:50052", **tls_env(pki, "store")}
    with pytest.raises(ConfigError, match="set CONVEYOR_TLS_CLIENT_CA"):
        refuse_insecure(store_listeners(StoreSettings.from_env(env)), insecure=False)
    mutual = {**env, **tls_env(pki, "store", mutual=True)}
    assert refuse_insecure(store_listeners(StoreSettings.from_env(mutual)), False) == []


@pytest.mark.parametrize(
    ("settings", "listeners", "variable"),
    [
        (WorkerSettings, worker_listeners, "CONVEYOR_WORKER_LISTEN"),
        (SchedulerSettings, scheduler_listeners, "CONVEYOR_SCHEDULER_LISTEN"),
        (WorkerSettings, worker_listeners, "CONVEYOR_METRICS_LISTEN"),
    ],
)
def test_health_and_metrics_ports_off_loopback_need_tls(
    settings: type[WorkerSettings], listeners: object, variable: str
) -> None:
    read = settings.from_env({variable: "0.0.0.0:9999"})
    with pytest.raises(ConfigError, match=f"{variable}=0.0.0.0:9999 .*CONVEYOR_TLS_CERT"):
        refuse_insecure(listeners(read), insecure=False)  # type: ignore[operator]


def test_insecure_turns_the_refusal_into_warnings() -> None:
    open_door = Listener("GATEWAY_LISTEN", "0.0.0.0:50051", ("CONVEYOR_AUTH",))
    warnings = refuse_insecure([open_door], insecure=True)
    assert warnings == [
        "CONVEYOR_GATEWAY_LISTEN=0.0.0.0:50051 is reachable from other machines: set CONVEYOR_AUTH"
    ]


def test_tls_files_must_exist_and_come_in_pairs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        StoreSettings.from_env(
            {"CONVEYOR_TLS_CERT": str(tmp_path / "missing.pem"), "CONVEYOR_TLS_CLIENT_CA": "x"}
        )
    text = str(refused.value)
    assert "missing.pem" in text and "no readable file" in text
    assert "CONVEYOR_TLS_CERT and CONVEYOR_TLS_KEY must be set together" in text


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["CONVEYOR_METRICS_LISTEN"] = "off"
    return {**env, **extra}


def test_python_m_gateway_on_every_interface_without_tls_exits_2_naming_the_settings() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway"],
        env=clean_env(CONVEYOR_GATEWAY_LISTEN="0.0.0.0:50999", CONVEYOR_HTTP_LISTEN="off"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "CONVEYOR_GATEWAY_LISTEN=0.0.0.0:50999 is reachable from other machines" in done.stderr
    assert "CONVEYOR_TLS_CERT and CONVEYOR_TLS_KEY" in done.stderr
    assert "CONVEYOR_AUTH" in done.stderr
    assert "CONVEYOR_INSECURE=1" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.integration
def test_python_m_scheduler_with_insecure_starts_and_warns(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    log = tmp_path / "scheduler.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "scheduler"],
            env=clean_env(
                CONVEYOR_SCHEDULER_LISTEN="0.0.0.0:0",
                CONVEYOR_NATS_URL=nats_server.url,
                CONVEYOR_INSECURE="1",
            ),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while "scheduler running" not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.1)
        text = log.read_text()
        assert "scheduler running" in text
        assert "WARNING" in text and "CONVEYOR_INSECURE=1, serving anyway" in text
        assert "CONVEYOR_SCHEDULER_LISTEN=0.0.0.0:0 is reachable" in text
    finally:
        process.terminate()
        process.wait(timeout=30)
