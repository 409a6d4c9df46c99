"""The client examples run against a real `conveyor dev`, each with its language's default
client settings (a 4 MiB receive limit in grpc-go): examples/typescript (protobuf-es and
Connect for Node), examples/go (grpc-go in GOPATH mode over Debian's packages) and
examples/python (the SDK). The dev's workers also serve examples/python/example_tasks.py's
``echo`` type, through which each example sends a custom payload holding 2**53+1. .ci/run
installs the Node and Go toolchains; elsewhere a missing one is a skip."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_TASKS = ROOT / "examples" / "python"
TYPESCRIPT = ROOT / "examples" / "typescript"
GO = ROOT / "examples" / "go"
DEBIAN_GO = Path("/usr/share/gocode")


def _missing(what: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (.ci/run installs it)")
    pytest.skip(what)


def _wait_serving(address: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                response = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"{address} did not become healthy")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The gateway address of a `conveyor dev` with one worker."""
    data = tmp_path_factory.mktemp("dev")
    address = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env |= {"CONVEYOR_GATEWAY_LISTEN": address, "CONVEYOR_METRICS_LISTEN": "off"}
    env["CONVEYOR_HTTP_LISTEN"] = "off"  # the examples use gRPC; :8000 may be someone else's
    env["CONVEYOR_WORKER_IMPORTS"] = "example_tasks"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(EXAMPLE_TASKS), env.get("PYTHONPATH")]))
    argv = [sys.executable, "-m", "conveyor.cli", "dev", "--workers", "1", "--data-dir", str(data)]
    process = subprocess.Popen(argv, env=env, cwd=data)
    try:
        _wait_serving(address, 90)
        yield address
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def _run(argv: list[str], cwd: Path, address: str, **env: str) -> str:
    done = subprocess.run(
        argv,
        cwd=cwd,
        env={**os.environ, "CONVEYOR_GATEWAY_ADDR": address, **env},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_typescript_example_runs_the_whole_flow(gateway: str) -> None:
    tsx = TYPESCRIPT / "node_modules" / ".bin" / "tsx"
    if shutil.which("node") is None or not tsx.exists():
        _missing("node and examples/typescript/node_modules (npm ci)")
    out = _run([str(tsx), "main.ts"], TYPESCRIPT, gateway)
    # 64-bit integers are strings in protobuf-es (jstype = JS_STRING): JSON.stringify takes a
    # message holding them, and the batch task's progress is shown as numbers.
    assert re.search(r'\{"version":"\d+","state":"COMPLETED","progress":\{', out), out
    assert "progress 3/3 100%" in out
    assert "image 2048x1536, 9437238 bytes" in out
    assert "bad request: text_processing.text: must not be empty" in out
    assert "custom echo: 9007199254740993 intact" in out
    assert out.rstrip().endswith("typescript example: ok")


def test_the_go_example_runs_the_whole_flow(gateway: str, tmp_path: Path) -> None:
    go = shutil.which("go")
    if go is None or not (DEBIAN_GO / "src/google.golang.org/grpc").is_dir():
        _missing("go and Debian's golang-google-grpc-dev")
    gopath = f"{GO / 'gopath'}:{DEBIAN_GO}"
    env = {"GO111MODULE": "off", "GOPATH": gopath, "GOFLAGS": ""}
    env["GOCACHE"] = os.environ.get("GOCACHE", str(tmp_path / "cache"))
    out = _run([go, "run", "main.go"], GO, gateway, **env)
    assert "image 2048x1536, 9437238 bytes" in out
    assert "bad request: text_processing.text: must not be empty" in out
    assert "custom echo: 9007199254740993 intact" in out
    assert out.rstrip().endswith("go example: ok")


def test_the_python_example_runs_the_whole_flow(gateway: str) -> None:
    out = _run([sys.executable, "main.py"], ROOT / "examples" / "python", gateway)
    assert "image 2048x1536, 9437238 bytes" in out
    assert "bad request: text_processing.text: must not be empty" in out
    assert "custom echo: 9007199254740993 intact" in out
    assert out.rstrip().endswith("python example: ok")
