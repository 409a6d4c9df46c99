"""The services talk over mutual TLS: the store answers only the gateway and the scheduler,
and clients reach the gateway over TLS."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import replace
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conveyor.api.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from conveyor.cli import main as cli_main
from conveyor.client import AsyncClient
from conveyor.config import SchedulerSettings
from conveyor.ids import new_task_id
from scheduler.app import Scheduler
from store.app import COUNT_SERVICE, SERVICE_NAME, WATCH_MUX_SERVICE
from tests.conftest import System
from tests.support.tls import Pki

pytestmark = pytest.mark.integration

OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
UNKNOWN = tasks_pb2.GetTaskRequest(task_id=new_task_id())
STORE_SERVICES = [
    SERVICE_NAME,
    WATCH_MUX_SERVICE,
    COUNT_SERVICE,
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
]


@pytest.fixture
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.make(tmp_path_factory.mktemp("pki"))


async def secure_system(system: System, pki: Pki) -> System:
    """Store with mutual TLS, gateway (gRPC and HTTP) with TLS calling it by its own
    certificate, a worker."""
    await system.start_store(common=replace(system.common, tls=pki.settings("store", True)))
    await system.start_worker()
    await system.start_gateway(
        common=replace(system.common, tls=pki.settings("gateway")), http_listen="127.0.0.1:0"
    )
    return system


async def store_call(address: str, credentials: grpc.ChannelCredentials | None) -> str:
    """What GetTask of an unknown task answers a caller with these credentials."""
    channel = (
        grpc.aio.insecure_channel(address, options=OWN_CONNECTION)
        if credentials is None
        else grpc.aio.secure_channel(address, credentials, options=OWN_CONNECTION)
    )
    async with channel:
        try:
            await tasks_pb2_grpc.TaskServiceStub(channel).GetTask(UNKNOWN, timeout=5)
        except grpc.aio.AioRpcError as exc:
            return str(exc.code().name)
    return "OK"


async def test_a_task_goes_through_the_gateway_and_the_store_over_tls(
    system: System, pki: Pki
) -> None:
    await secure_system(system, pki)
    assert system.gateway is not None
    address = system.gateway.address
    async with AsyncClient(address, credentials=pki.credentials()) as client:
        task = await client.submit_text("Hello, TLS.", transforms=["upper"])
        done = await client.wait(task.id, timeout=60)
        assert done.state == tasks_pb2.TASK_STATE_COMPLETED
        assert done.result.text_processing.words == 2
        # Read through the gateway's relay to the store, over mutual TLS.
        assert (await client.get(task.id)).state == tasks_pb2.TASK_STATE_COMPLETED
    async with AsyncClient(address, timeout=5) as plaintext:
        with pytest.raises(Exception, match=r"(?i)unavailable"):
            await plaintext.get(task.id)
    port = system.gateway.http.address.rpartition(":")[2]
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=pki.ca_file)) as http:
        answer = await http.get(f"https://localhost:{port}/v1/tasks/{task.id}")
        assert answer.status_code == 200
        assert answer.json()["task"]["state"] == "TASK_STATE_COMPLETED"
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.HTTPError):
            await http.get(f"http://127.0.0.1:{port}/v1/tasks/{task.id}")


async def test_the_store_answers_only_the_services(system: System, pki: Pki) -> None:
    await secure_system(system, pki)
    assert system.store is not None
    store = system.store.address
    # No certificate: the handshake fails, nothing is answered.
    assert await store_call(store, None) == "UNAVAILABLE"
    assert await store_call(store, pki.credentials()) == "UNAVAILABLE"
    # A certificate of the CA that names no service: refused.
    assert await store_call(store, pki.credentials("intruder")) == "PERMISSION_DENIED"
    # Streams are guarded too.
    async with grpc.aio.secure_channel(store, pki.credentials("intruder")) as channel:
        watch = tasks_pb2_grpc.TaskServiceStub(channel).WatchTask(
            tasks_pb2.WatchTaskRequest(task_id=UNKNOWN.task_id), timeout=5
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in watch:
                pass
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # Health stays open to any certificate of the CA, for probes.
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    # The gateway's identity passes (the task is simply unknown).
    assert await store_call(store, pki.credentials("gateway")) == "NOT_FOUND"


async def test_the_scheduler_calls_the_store_by_its_own_certificate(
    system: System, pki: Pki
) -> None:
    await secure_system(system, pki)
    assert system.store is not None
    tls = pki.settings("scheduler")
    scheduler = Scheduler(
        SchedulerSettings(
            common=replace(system.common, tls=tls),
            listen="127.0.0.1:0",
            store_addr=system.store.address,
        )
    )
    system.scheduler = scheduler
    await scheduler.start()
    with pytest.raises(grpc.aio.AioRpcError) as answered:
        await tasks_pb2_grpc.TaskServiceStub(scheduler.channel).GetTask(UNKNOWN, timeout=5)
    assert answered.value.code() == grpc.StatusCode.NOT_FOUND


async def test_the_sdk_and_cli_take_tls_from_the_environment(
    system: System, pki: Pki, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await secure_system(system, pki)
    assert system.gateway is not None
    address = system.gateway.address
    monkeypatch.setenv("CONVEYOR_TLS_CA", pki.ca_file)
    async with AsyncClient(address) as client:
        task = await client.submit_text("Hello from the environment.")
    # The CLI runs its own event loop: in a thread, away from this test's.
    code = await asyncio.to_thread(cli_main, ["--addr", address, "get", task.id])
    assert code == 0, capsys.readouterr().err
    assert task.id in capsys.readouterr().out
    monkeypatch.delenv("CONVEYOR_TLS_CA")
    code = await asyncio.to_thread(cli_main, ["--addr", address, "get", task.id])
    assert code == 1
    assert "CONVEYOR_TLS_CA" in capsys.readouterr().err


def store_methods() -> list[MethodDescriptor]:
    """Every method of every service the store serves, health and reflection included."""
    pool = descriptor_pool.Default()
    names = [*STORE_SERVICES, "grpc.health.v1.Health"]
    methods = [m for name in names for m in pool.FindServiceByName(name).methods]
    assert len(methods) > 10
    return methods


async def answer(channel: grpc.aio.Channel, method: MethodDescriptor) -> str:
    """The status code one call of ``method`` with an empty request gets."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    if method.client_streaming:
        call: Any = channel.stream_stream(path)(iter([b""]), timeout=3)
    elif method.server_streaming:
        call = channel.unary_stream(path)(b"", timeout=3)
    else:
        call = channel.unary_unary(path)(b"", timeout=3)
    try:
        if method.server_streaming:
            async for _ in call:
                break
        else:
            await call
    except grpc.aio.AioRpcError as exc:
        return str(exc.code().name)
    return "OK"


async def test_every_method_of_the_store_answers_only_the_services(
    system: System, pki: Pki
) -> None:
    """The store's side of the role table: every method it serves, but health, refuses a
    certificate of the CA that names no service, and answers the gateway's."""
    await secure_system(system, pki)
    assert system.store is not None
    store = system.store.address
    async with (
        grpc.aio.secure_channel(store, pki.credentials("intruder")) as intruder,
        grpc.aio.secure_channel(store, pki.credentials("gateway")) as gateway,
    ):
        for method in store_methods():
            public = method.containing_service.full_name == "grpc.health.v1.Health"
            refused = await answer(intruder, method)
            allowed = await answer(gateway, method)
            assert (refused == "PERMISSION_DENIED") != public, (method.full_name, refused)
            assert allowed not in ("PERMISSION_DENIED", "UNAUTHENTICATED"), method.full_name
