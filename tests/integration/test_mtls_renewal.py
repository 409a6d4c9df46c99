"""The gateway and the scheduler present a renewed client certificate to the store without
a restart, and a watch open across the renewal sees its task to the end."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from conveyor.api.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from conveyor.client import AsyncClient
from conveyor.config import SchedulerSettings, TlsSettings
from conveyor.context import TaskContext
from conveyor.ids import new_task_id
from conveyor.registry import Registry
from conveyor.renewing import RenewingChannel, service_channel
from scheduler.app import Scheduler
from tests.conftest import System
from tests.support.tls import Pki, mount

pytestmark = pytest.mark.integration

RELOAD = 0.2
"""The services' check interval here (30 s in deployment)."""
WITHIN = 25 * RELOAD
"""How long a renewal may take to show: a few intervals, and room for a loaded machine."""
UNKNOWN = tasks_pb2.GetTaskRequest(task_id=new_task_id())


@pytest.fixture
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.make(tmp_path_factory.mktemp("pki"))


def mounted_tls(pki: Pki, name: str, folder: Path) -> TlsSettings:
    """A service's TLS from a mounted Secret in ``folder`` holding ``name``'s certificate."""
    folder.mkdir(exist_ok=True)
    files = mount(pki.issue(name), folder)
    return replace(files, ca=pki.ca_file, reload_seconds=RELOAD)


async def get_status(get: Callable[[], Awaitable[object]]) -> grpc.StatusCode:
    try:
        await get()
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def eventually(
    get: Callable[[], Awaitable[object]], expected: grpc.StatusCode, within: float
) -> None:
    """Waits until ``get`` answers ``expected``; fails after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while (status := await get_status(get)) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"still {status.name}"
        await asyncio.sleep(0.05)


async def until(condition: Callable[[], bool], within: float) -> None:
    """Waits until ``condition()`` holds; fails after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "did not happen in time"
        await asyncio.sleep(RELOAD / 4)


async def test_the_gateway_presents_its_renewed_certificate_without_a_restart(
    system: System, pki: Pki, tmp_path: Path
) -> None:
    await system.start_store(common=replace(system.common, tls=pki.settings("store", True)))
    await system.start_worker()
    # Its first certificate names an identity the store does not answer.
    secret = tmp_path / "gateway-secret"
    tls = mounted_tls(pki, "gateway-before", secret)
    await system.start_gateway(common=replace(system.common, tls=tls), http_listen="127.0.0.1:0")
    assert system.gateway is not None
    address = system.gateway.address
    port = system.gateway.http.address.rpartition(":")[2]
    url = f"https://localhost:{port}/v1/tasks/{UNKNOWN.task_id}"
    async with (
        AsyncClient(address, credentials=pki.credentials()) as client,
        grpc.aio.secure_channel(address, pki.credentials()) as channel,
        httpx.AsyncClient(verify=ssl.create_default_context(cafile=pki.ca_file)) as http,
    ):
        stub = tasks_pb2_grpc.TaskServiceStub(channel)
        get = lambda: stub.GetTask(UNKNOWN, timeout=5)  # noqa: E731
        assert await get_status(get) == grpc.StatusCode.PERMISSION_DENIED
        await asyncio.sleep(3 * RELOAD)
        assert await get_status(get) == grpc.StatusCode.PERMISSION_DENIED
        assert (await http.get(url)).status_code == 403  # the HTTP door's way to the store

        # cert-manager renews the Secret, with the identity the store answers.
        mount(pki.issue("gateway"), secret)
        await eventually(get, grpc.StatusCode.NOT_FOUND, within=WITHIN)
        # Every way to the store moved: a repeated submit (its idempotency key looked up
        # in the store), a watch, a read.
        task = await client.submit_text("Renewed.", idempotency_key="renewed")
        again = await client.submit_text("Renewed.", idempotency_key="renewed")
        assert again.id == task.id
        done = await client.wait(task.id, timeout=30)
        assert done.state == tasks_pb2.TASK_STATE_COMPLETED
        assert (await client.get(task.id)).state == tasks_pb2.TASK_STATE_COMPLETED
        assert (await http.get(url)).status_code == 404


async def test_a_watch_open_across_a_renewal_sees_its_task_complete(
    system: System, pki: Pki, tmp_path: Path
) -> None:
    # The store answers both certificates: the watch starts on the first one.
    peers = ("gateway-before.conveyor.internal", "gateway.conveyor.internal")
    store_tls = replace(pki.settings("store", True), allowed_peers=peers)
    await system.start_store(common=replace(system.common, tls=store_tls))
    secret = tmp_path / "gateway-secret"
    tls = mounted_tls(pki, "gateway-before", secret)
    await system.start_gateway(common=replace(system.common, tls=tls))
    gateway = system.gateway
    assert gateway is not None and isinstance(gateway.channel, RenewingChannel)
    # The task runs until the test lets it finish, after the renewal.
    finish = asyncio.Event()

    async def held(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
        await finish.wait()
        return {}

    registry = Registry()
    registry.task("held")(held)
    await system.start_worker(registry)
    async with (
        AsyncClient(gateway.address, credentials=pki.credentials()) as client,
        grpc.aio.secure_channel(gateway.address, pki.credentials()) as channel,
    ):
        task = await client.submit_custom("held")
        # A plain gRPC watch, which (unlike the SDK's) does not resume by itself.
        watch = tasks_pb2_grpc.TaskServiceStub(channel).WatchTask(
            tasks_pb2.WatchTaskRequest(task_id=task.id), timeout=60
        )
        first = await watch.read()
        before = gateway.channel.current

        mount(pki.issue("gateway"), secret)
        await until(lambda: gateway.channel.generation == 1, within=WITHIN)
        # The previous channel closes after its grace period, breaking the store call
        # the watch ran on.
        shutdown = grpc.ChannelConnectivity.SHUTDOWN
        await until(lambda: before.get_state() == shutdown, within=WITHIN)

        finish.set()
        states, versions = [first.task.state], [first.task.version]
        while (update := await watch.read()) != grpc.aio.EOF:
            states.append(update.task.state)
            versions.append(update.task.version)
        assert await watch.code() == grpc.StatusCode.OK
        assert states[-1] == tasks_pb2.TASK_STATE_COMPLETED
        assert tasks_pb2.TASK_STATE_RUNNING in states
        assert versions == sorted(set(versions))  # none twice, none out of order


async def test_the_scheduler_presents_its_renewed_certificate_without_a_restart(
    system: System, pki: Pki, tmp_path: Path
) -> None:
    await system.start_store(common=replace(system.common, tls=pki.settings("store", True)))
    assert system.store is not None
    secret = tmp_path / "scheduler-secret"
    scheduler = Scheduler(
        SchedulerSettings(
            common=replace(system.common, tls=mounted_tls(pki, "scheduler-before", secret)),
            listen="127.0.0.1:0",
            store_addr=system.store.address,
        )
    )
    system.scheduler = scheduler
    await scheduler.start()
    # A stub made before the renewal, as the scheduler's own are, at start.
    stub = tasks_pb2_grpc.TaskServiceStub(scheduler.channel)
    get = lambda: stub.GetTask(UNKNOWN, timeout=5)  # noqa: E731
    assert await get_status(get) == grpc.StatusCode.PERMISSION_DENIED

    mount(pki.issue("scheduler"), secret)
    await eventually(get, grpc.StatusCode.NOT_FOUND, within=WITHIN)


async def test_a_broken_renewal_keeps_the_current_certificate(
    system: System, pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await system.start_store(common=replace(system.common, tls=pki.settings("store", True)))
    assert system.store is not None
    secret = tmp_path / "secret"
    channel = service_channel(system.store.address, mounted_tls(pki, "gateway", secret), options=[])
    assert isinstance(channel, RenewingChannel)
    try:
        stub = tasks_pb2_grpc.TaskServiceStub(channel)
        get = lambda: stub.GetTask(UNKNOWN, timeout=5)  # noqa: E731
        assert await get_status(get) == grpc.StatusCode.NOT_FOUND
        # A key that does not match the certificate (a half-done renewal, say).
        (secret / "tls.key").write_bytes(pki.issue("intruder").key.read_bytes())
        caplog.set_level(logging.ERROR, "conveyor.tls")
        await asyncio.sleep(5 * RELOAD)
        assert channel.generation == 0
        assert await get_status(get) == grpc.StatusCode.NOT_FOUND
        assert len([r for r in caplog.records if "keeping the previous" in r.message]) == 1
        # Completed, the renewal is taken.
        mount(pki.issue("scheduler"), secret)
        await until(lambda: channel.generation == 1, within=WITHIN)
        assert await get_status(get) == grpc.StatusCode.NOT_FOUND
    finally:
        await channel.close()


async def test_a_channel_without_a_client_certificate_follows_its_ca(
    system: System, pki: Pki, tmp_path: Path
) -> None:
    await system.start_store(common=replace(system.common, tls=pki.settings("store")))
    assert system.store is not None
    other = Pki.make(tmp_path / "other")
    ca = tmp_path / "ca.pem"
    ca.write_bytes(Path(other.ca_file).read_bytes())
    tls = TlsSettings(ca=str(ca), reload_seconds=RELOAD)
    channel = service_channel(system.store.address, tls, options=[])
    try:
        stub = tasks_pb2_grpc.TaskServiceStub(channel)
        get = lambda: stub.GetTask(UNKNOWN, timeout=5)  # noqa: E731
        # Trusting another CA, the channel does not believe the store.
        assert await get_status(get) == grpc.StatusCode.UNAVAILABLE
        ca.write_bytes(Path(pki.ca_file).read_bytes())
        await eventually(get, grpc.StatusCode.NOT_FOUND, within=WITHIN)
    finally:
        await channel.close()


async def test_a_plaintext_channel_watches_no_files() -> None:
    channel = service_channel("127.0.0.1:1", TlsSettings(), options=[])
    try:
        assert not isinstance(channel, RenewingChannel)
    finally:
        await channel.close()
