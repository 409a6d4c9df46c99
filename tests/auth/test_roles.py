"""The role table against a real gateway: it covers every method the gateway serves, and
every method answers no credentials, a wrong role and the right one as the table says."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import MethodDescriptor
from grpc_reflection.v1alpha import reflection_pb2

from conveyor.auth import roles
from conveyor.auth.principal import METADATA_AUTHORIZATION, METADATA_NAMESPACE, Role
from conveyor.errors import PermissionDenied
from tests.auth.conftest import Secured
from tests.conftest import System

pytestmark = [pytest.mark.integration]

BELOW = {Role.SUBMITTER: Role.READER, Role.OPERATOR: Role.SUBMITTER, Role.ADMIN: Role.OPERATOR}
REFUSALS = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


def descriptor(path: str) -> MethodDescriptor:
    service, _, method = path.lstrip("/").partition("/")
    found: MethodDescriptor = descriptor_pool.Default().FindMethodByName(f"{service}.{method}")
    return found


async def served_methods(channel: grpc.aio.Channel) -> set[str]:
    """Every method of every service the server lists through reflection."""
    stub = channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    call = stub(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    response = await call.read()
    call.cancel()
    pool = descriptor_pool.Default()
    methods = set()
    for service in response.list_services_response.service:
        for method in pool.FindServiceByName(service.name).methods:
            methods.add(roles.method_path(service.name, method.name))
    return methods


async def test_the_table_covers_every_method_the_gateway_serves(system: System) -> None:
    await system.start()
    assert system.channel is not None
    served = await served_methods(system.channel)
    assert "/conveyor.api.auth.v1.AuthService/CreateKey" in served
    assert served == set(roles.REQUIRED), (
        f"not in the table: {sorted(served - set(roles.REQUIRED))}; "
        f"in the table, not served: {sorted(set(roles.REQUIRED) - served)}"
    )


async def call(channel: grpc.aio.Channel, path: str, metadata: list[tuple[str, str]]) -> Any:
    """Calls ``path`` with an empty request; the status code it ends with, or OK when a
    stream delivered its first message."""
    method = descriptor(path)
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    kinds = {
        (False, False): channel.unary_unary,
        (False, True): channel.unary_stream,
        (True, True): channel.stream_stream,
    }
    stub = kinds[(method.client_streaming, method.server_streaming)](
        path,
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    request = request_class()
    if path.endswith("/ServerReflectionInfo"):
        request = request_class(list_services="")
    try:
        if not method.server_streaming:
            await stub(request, metadata=metadata, timeout=10)
            return grpc.StatusCode.OK
        streamed = stub(
            iter([request]) if method.client_streaming else request,
            metadata=metadata,
            timeout=10,
        )
        first = await streamed.read()
        streamed.cancel()
        return grpc.StatusCode.OK if first is not grpc.aio.EOF else await streamed.code()
    except grpc.aio.AioRpcError as err:
        return err.code()


@pytest.mark.parametrize("path", sorted(roles.REQUIRED))
async def test_every_method_checks_its_role(secured: Secured, path: str) -> None:
    channel = secured.system.channel
    assert channel is not None
    needed = roles.REQUIRED[path]

    def bearer(role: Role, namespace: str = "") -> list[tuple[str, str]]:
        metadata = [(METADATA_AUTHORIZATION, f"Bearer {secured.keys[role]}")]
        return metadata + ([(METADATA_NAMESPACE, namespace)] if namespace else [])

    no_credentials = await call(channel, path, [])
    if needed is roles.PUBLIC:
        assert no_credentials not in REFUSALS
        return
    assert no_credentials == grpc.StatusCode.UNAUTHENTICATED
    forged = [(METADATA_AUTHORIZATION, "Bearer cvk_000000000000_" + "x" * 43)]
    assert await call(channel, path, forged) == grpc.StatusCode.UNAUTHENTICATED
    # Nothing is below a reader: a reader asking another namespace is the wrong caller.
    wrong = bearer(Role.READER, "elsewhere") if needed is Role.READER else bearer(BELOW[needed])
    assert await call(channel, path, wrong) == grpc.StatusCode.PERMISSION_DENIED
    assert await call(channel, path, bearer(needed)) not in REFUSALS


async def test_an_admin_may_work_in_any_namespace_and_others_only_their_own(
    secured: Secured,
) -> None:
    async with secured.client(Role.ADMIN, namespace="team-b") as admin:
        await admin.list()
    async with secured.client(Role.OPERATOR, namespace="default") as own:
        await own.list()
    async with secured.client(Role.OPERATOR, namespace="team-b") as other:
        with pytest.raises(PermissionDenied, match="not 'team-b'"):
            await other.list()
