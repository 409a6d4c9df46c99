"""Server reflection answers v1 clients as well as v1alpha ones: a real server on loopback,
asked by `buf curl` (a Go reflection client) pinned to each protocol and by a raw v1 call."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from conveyor.metrics import ServiceMetrics
from conveyor.reflection import V1_SERVICE_NAME
from conveyor.server import Server
from gateway.service import TASK_SERVICE

pytestmark = pytest.mark.integration


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    server = Server("127.0.0.1:0", [TASK_SERVICE.full_name], 4 * 1024 * 1024, ServiceMetrics("s"))
    await server.start()
    yield server
    await server.stop(0.1)


async def _buf_curl(server: Server, *args: str) -> str:
    buf = shutil.which("buf")
    assert buf is not None, "buf (the PyPI package buf-bin) is a test dependency"
    proc = await asyncio.create_subprocess_exec(
        buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge", *args,
        f"http://{server.address}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest.mark.parametrize("protocol", ["grpc-v1", "grpc-v1alpha"])
async def test_a_reflection_client_of_either_version_lists_the_methods(
    server: Server, protocol: str
) -> None:
    listed = await _buf_curl(server, "--reflect-protocol", protocol, "--list-methods")
    assert "conveyor.api.tasks.v1.TaskService/SubmitTask" in listed.split()
    assert "conveyor.api.tasks.v1.TaskService/WatchTask" in listed.split()


async def test_a_v1_client_reads_the_service_list_and_a_file_by_symbol(server: Server) -> None:
    # The v1 messages as a v1-only client has them: from the v1 file, by their v1 names.
    pool = descriptor_pool.Default()
    request_type = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionRequest")
    )
    response_type = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionResponse")
    )
    async with grpc.aio.insecure_channel(server.address) as channel:
        call = channel.stream_stream(
            f"/{V1_SERVICE_NAME}/ServerReflectionInfo",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type.FromString,
        )
        answers = [
            answer
            async for answer in call(
                iter(
                    [
                        request_type(list_services=""),
                        request_type(file_containing_symbol=TASK_SERVICE.full_name),
                    ]
                )
            )
        ]
    names = {service.name for service in answers[0].list_services_response.service}
    assert {TASK_SERVICE.full_name, V1_SERVICE_NAME, "grpc.health.v1.Health"} <= names
    files = answers[1].file_descriptor_response.file_descriptor_proto
    parsed = [descriptor_pb2.FileDescriptorProto.FromString(raw) for raw in files]
    assert "conveyor/api/tasks/v1/tasks.proto" in {file.name for file in parsed}
