"""`conveyor dev --secure`: the whole system over TLS, the store behind mutual TLS.

Calls carry the printed admin key as a bearer token, as a client of the secure system
does; the gateway checks it once authentication is on (CONVEYOR_AUTH=keys)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.api.tasks.v1 import tasks_pb2_grpc
from conveyor.certs import LocalCA
from conveyor.ids import new_task_id
from conveyor.tls import channel_credentials
from tests.conftest import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


@dataclass
class SecureDev:
    gateway: str
    http: str
    store: str
    tls: Path
    key: str

    @property
    def ca(self) -> str:
        return str(self.tls / "ca.pem")

    def credentials(self, name: str | None = None) -> grpc.ChannelCredentials:
        cert = key = ""
        if name is not None:
            cert, key = str(self.tls / f"{name}.pem"), str(self.tls / f"{name}-key.pem")
        credentials = channel_credentials(self.ca, cert, key)
        assert credentials is not None
        return credentials


def wait_output(path: Path, pattern: str, process: subprocess.Popen[bytes]) -> re.Match[str]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        found = re.search(pattern, path.read_text(), re.MULTILINE)
        if found:
            return found
        assert process.poll() is None, path.read_text()
        time.sleep(0.2)
    raise TimeoutError(f"conveyor dev --secure printed no {pattern!r}")


@pytest.fixture(scope="module")
def secure_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureDev]:
    root = tmp_path_factory.mktemp("secure-dev")
    port, http_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["CONVEYOR_GATEWAY_LISTEN"] = f"127.0.0.1:{port}"
    env["CONVEYOR_HTTP_LISTEN"] = f"127.0.0.1:{http_port}"
    data = root / "data"
    argv = [sys.executable, "-m", "conveyor.cli", "dev", "--secure", "--workers", "1"]
    out = root / "out.txt"
    with out.open("w") as stdout:
        process = subprocess.Popen(
            [*argv, "--data-dir", str(data)], env=env, cwd=root, stdout=stdout
        )
    try:
        wait_output(out, r"^Press Ctrl-C", process)
        text = out.read_text()
        store = re.search(r"^  store +(\S+)", text, re.MULTILINE)
        key = re.search(r"CONVEYOR_API_KEY=(cvk_\S+)", text)
        assert store and key, text
        assert f"CONVEYOR_TLS_CA={data / 'tls' / 'ca.pem'}" in text
        assert "grpcurl -cacert" in text and "buf curl --protocol grpc --cacert" in text
        yield SecureDev(
            f"127.0.0.1:{port}", f"127.0.0.1:{http_port}", store[1], data / "tls", key[1]
        )
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


async def health(address: str, credentials: grpc.ChannelCredentials | None) -> str:
    channel = (
        grpc.aio.insecure_channel(address, options=OWN_CONNECTION)
        if credentials is None
        else grpc.aio.secure_channel(address, credentials, options=OWN_CONNECTION)
    )
    async with channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        except grpc.aio.AioRpcError as exc:
            return str(exc.code().name)
    return "OK"


async def test_a_tls_client_with_the_ca_and_key_runs_a_task_to_completion(
    secure_dev: SecureDev,
) -> None:
    bearer = (("authorization", f"Bearer {secure_dev.key}"),)
    request = S.SubmitTaskRequest(text_processing=S.TextProcessingInput(text="Secure hello."))
    async with grpc.aio.secure_channel(secure_dev.gateway, secure_dev.credentials()) as channel:
        stub = tasks_pb2_grpc.TaskServiceStub(channel)
        async with asyncio.timeout(60):  # the worker registers its types as it starts
            while True:
                try:
                    submitted = await stub.SubmitTask(request, metadata=bearer)
                    break
                except grpc.aio.AioRpcError as err:
                    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
                    await asyncio.sleep(0.5)
        task_id = submitted.task.id
        async with asyncio.timeout(60):
            while True:
                got = await stub.GetTask(S.GetTaskRequest(task_id=task_id), metadata=bearer)
                if got.task.state == S.TASK_STATE_COMPLETED:
                    break
                assert got.task.state not in (S.TASK_STATE_FAILED, S.TASK_STATE_CANCELLED)
                await asyncio.sleep(0.1)
    trusted = ssl.create_default_context(cafile=secure_dev.ca)
    async with httpx.AsyncClient(verify=trusted) as http:
        answer = await http.get(
            f"https://{secure_dev.http}/v1/tasks/{task_id}",
            headers={"authorization": f"Bearer {secure_dev.key}"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["task"]["state"] == "TASK_STATE_COMPLETED"


async def test_plaintext_and_strangers_are_refused(secure_dev: SecureDev, tmp_path: Path) -> None:
    assert await health(secure_dev.gateway, secure_dev.credentials()) == "OK"
    assert await health(secure_dev.gateway, None) == "UNAVAILABLE"
    stranger = LocalCA(tmp_path / "stranger")
    other = channel_credentials(str(stranger.cert_path))
    assert await health(secure_dev.gateway, other) == "UNAVAILABLE"
    async with httpx.AsyncClient() as plain:
        with pytest.raises(httpx.HTTPError):
            await plain.get(f"http://{secure_dev.http}/v1/tasks")


async def test_the_store_takes_only_the_services_certificates(secure_dev: SecureDev) -> None:
    store = secure_dev.store
    assert await health(store, None) == "UNAVAILABLE"
    assert await health(store, secure_dev.credentials()) == "UNAVAILABLE"  # no certificate
    assert await health(store, secure_dev.credentials("gateway")) == "OK"
    # A certificate of the same CA naming no service the store answers.
    LocalCA(secure_dev.tls).issue("intruder", ["intruder.example.com"])
    async with grpc.aio.secure_channel(
        store, secure_dev.credentials("intruder"), options=OWN_CONNECTION
    ) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await tasks_pb2_grpc.TaskServiceStub(channel).GetTask(
                S.GetTaskRequest(task_id=new_task_id()), timeout=5
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
