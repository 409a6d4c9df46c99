"""The SDK over TLS with a bearer token: a real gRPC server with a self-signed certificate
(made by openssl) sees the token, and a plaintext client cannot talk to it."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import grpc
import pytest

from conveyor.api.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from conveyor.client import AsyncClient, Client
from conveyor.errors import Unavailable

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

pytestmark = pytest.mark.integration


@dataclass
class Recorder(tasks_pb2_grpc.TaskServiceServicer):
    """Answers GetTask and keeps the authorization metadata of each call."""

    seen: list[str] = field(default_factory=list)

    async def GetTask(
        self, request: tasks_pb2.GetTaskRequest, context: Context
    ) -> tasks_pb2.GetTaskResponse:
        metadata = dict(context.invocation_metadata() or ())
        self.seen.append(str(metadata.get("authorization", "")))
        return tasks_pb2.GetTaskResponse(task=tasks_pb2.Task(id=request.task_id))


@dataclass
class TlsServer:
    address: str
    certificate: bytes
    recorder: Recorder


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[TlsServer]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl makes the test's certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    recorder = Recorder()
    server = grpc.aio.server()
    tasks_pb2_grpc.add_TaskServiceServicer_to_server(recorder, server)
    credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    yield TlsServer(f"127.0.0.1:{port}", cert.read_bytes(), recorder)
    await server.stop(0.1)


def _tls_with_token(server: TlsServer, token: str) -> grpc.ChannelCredentials:
    return grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(root_certificates=server.certificate),
        grpc.access_token_call_credentials(token),
    )


async def test_the_async_client_sends_its_token_over_tls(tls_server: TlsServer) -> None:
    credentials = _tls_with_token(tls_server, "secret-1")
    async with AsyncClient(tls_server.address, credentials=credentials) as client:
        assert (await client.get("t1")).id == "t1"
    assert tls_server.recorder.seen == ["Bearer secret-1"]


async def test_a_plaintext_client_cannot_call_a_tls_server(tls_server: TlsServer) -> None:
    async with AsyncClient(tls_server.address, timeout=5) as client:
        with pytest.raises(Unavailable):
            await client.get("t1")
    assert tls_server.recorder.seen == []


async def test_the_blocking_client_sends_its_token_over_tls(tls_server: TlsServer) -> None:
    def call() -> str:
        with Client(tls_server.address, credentials=_tls_with_token(tls_server, "s2")) as c:
            return c.get("t2").id

    assert await asyncio.to_thread(call) == "t2"
    assert tls_server.recorder.seen == ["Bearer s2"]
