"""The interceptor on a real gRPC server: the caller's principal is what handlers see for
the whole call, streams included; with authentication off, LOCAL in the namespace asked
for; and a method in no role table is refused either way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_status import rpc_status
from nats.js import JetStreamContext

from conveyor import jetstream, subjects
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.auth.authenticate import Authenticator
from conveyor.auth.keyring import KeyRing
from conveyor.auth.principal import (
    METADATA_AUTHORIZATION,
    METADATA_NAMESPACE,
    Role,
    current_principal,
)
from conveyor.config import CommonSettings
from conveyor.server import Server

pytestmark = [pytest.mark.integration]

SERVICE = "conveyor.api.tasks.v1.TaskService"


def who() -> str:
    p = current_principal()
    return f"{p.subject} {p.role.label} {p.namespace}"


async def get_task(request: tasks_pb2.GetTaskRequest, context: Any) -> tasks_pb2.GetTaskResponse:
    return tasks_pb2.GetTaskResponse(task=tasks_pb2.Task(id=who()))


async def watch_task(
    request: tasks_pb2.WatchTaskRequest, context: Any
) -> AsyncIterator[tasks_pb2.WatchTaskResponse]:
    for _ in range(3):
        await asyncio.sleep(0.01)  # other calls run between the stream's messages
        yield tasks_pb2.WatchTaskResponse(task=tasks_pb2.Task(id=who()))


async def serve(authenticator: Authenticator) -> Server:
    server = Server("127.0.0.1:0", [SERVICE], 4 * 1024 * 1024, authenticator=authenticator)
    handlers = {
        "GetTask": grpc.unary_unary_rpc_method_handler(
            get_task,
            request_deserializer=tasks_pb2.GetTaskRequest.FromString,
            response_serializer=tasks_pb2.GetTaskResponse.SerializeToString,
        ),
        "WatchTask": grpc.unary_stream_rpc_method_handler(
            watch_task,
            request_deserializer=tasks_pb2.WatchTaskRequest.FromString,
            response_serializer=tasks_pb2.WatchTaskResponse.SerializeToString,
        ),
        # Served, but in no role table.
        "Unlisted": grpc.unary_unary_rpc_method_handler(
            get_task,
            request_deserializer=tasks_pb2.GetTaskRequest.FromString,
            response_serializer=tasks_pb2.GetTaskResponse.SerializeToString,
        ),
    }
    server.grpc.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    await server.start()
    return server


class Calls:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.get = channel.unary_unary(
            f"/{SERVICE}/GetTask",
            request_serializer=tasks_pb2.GetTaskRequest.SerializeToString,
            response_deserializer=tasks_pb2.GetTaskResponse.FromString,
        )
        self.watch = channel.unary_stream(
            f"/{SERVICE}/WatchTask",
            request_serializer=tasks_pb2.WatchTaskRequest.SerializeToString,
            response_deserializer=tasks_pb2.WatchTaskResponse.FromString,
        )
        self.unlisted = channel.unary_unary(
            f"/{SERVICE}/Unlisted",
            request_serializer=tasks_pb2.GetTaskRequest.SerializeToString,
            response_deserializer=tasks_pb2.GetTaskResponse.FromString,
        )


async def test_with_authentication_off_the_caller_is_local_in_the_namespace_asked(
    common: CommonSettings,
) -> None:
    server = await serve(Authenticator())
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            calls = Calls(channel)
            plain = await calls.get(tasks_pb2.GetTaskRequest())
            assert plain.task.id == "local admin default"
            asked = [(METADATA_NAMESPACE, "team-x")]
            assert (await calls.get(tasks_pb2.GetTaskRequest(), metadata=asked)).task.id == (
                "local admin team-x"
            )
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await calls.get(tasks_pb2.GetTaskRequest(), metadata=[(METADATA_NAMESPACE, "../x")])
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            status = rpc_status.from_call(bad.value)
            assert status is not None and "conveyor-namespace" in status.message
            with pytest.raises(grpc.aio.AioRpcError) as unlisted:
                await calls.unlisted(tasks_pb2.GetTaskRequest())
            assert unlisted.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await server.stop(0)


async def test_the_principal_is_bound_for_the_whole_stream(
    nats_connection: tuple[object, JetStreamContext], common: CommonSettings
) -> None:
    _, js = nats_connection
    ring = KeyRing((await jetstream.ensure_buckets(js, common))[subjects.KV_KEYS])
    await ring.start()
    _, reader = await ring.create("team-r", Role.READER)
    _, admin = await ring.create("default", Role.ADMIN)
    server = await serve(Authenticator(ring))
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            calls = Calls(channel)

            async def watch(key: object, namespace: str = "") -> list[str]:
                metadata = [(METADATA_AUTHORIZATION, f"Bearer {key}")]
                if namespace:
                    metadata.append((METADATA_NAMESPACE, namespace))
                return [
                    r.task.id
                    async for r in calls.watch(tasks_pb2.WatchTaskRequest(), metadata=metadata)
                ]

            # Two streams interleaved: each sees its own caller on every message.
            as_reader, as_admin = await asyncio.gather(watch(reader), watch(admin, "team-z"))
            assert as_reader == [f"key:{reader.key_id} reader team-r"] * 3
            assert as_admin == [f"key:{admin.key_id} admin team-z"] * 3
            with pytest.raises(grpc.aio.AioRpcError) as unlisted:
                await calls.unlisted(
                    tasks_pb2.GetTaskRequest(),
                    metadata=[(METADATA_AUTHORIZATION, f"Bearer {admin}")],
                )
            assert unlisted.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await server.stop(0)
        await ring.stop()
