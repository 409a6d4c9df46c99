"""A Conveyor cluster made of real processes that the fault tests kill and restart.

Every service runs as ``python -m store|gateway|worker|scheduler`` with ``CONVEYOR_*``
variables, on fixed loopback ports chosen at start, so a restarted process comes back at
the same address and its clients reconnect. Each process leads its own process group,
so teardown also reaps the worker's handler processes; ``kill()`` sends SIGKILL to the
service process alone, as a crash would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conveyor.api.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from tests.conftest import NATS_MAX_PAYLOAD, NatsServer, free_port

ROOT = Path(__file__).resolve().parents[2]
ACK_WAIT_SECONDS = 3.0
"""The lease of a task: a dead worker's task is redelivered this long after its last
heartbeat. Short, so the tests wait seconds rather than the default 30."""
READY_TIMEOUT = 60.0
LOG_TAIL_BYTES = 6000


class Service:
    """One Conveyor service process, restartable at the same address."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], address: str, log_dir: Path
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.address = address
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        assert not self.alive, f"{self.name} is running already"
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {self.starts} =====\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.log_path.parent,  # no stray .env file is read
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: no clean-up of any kind."""
        if self.alive:
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    def freeze(self) -> None:
        """SIGSTOP: the process stops mid-step (a long pause), holding whatever it has."""
        os.kill(self.pid, signal.SIGSTOP)

    def terminate(self) -> None:
        """SIGTERM: a graceful shutdown."""
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def reap(self) -> None:
        """Ends the whole process group (the service and its handler processes)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    async def ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Waits until the service's gRPC health check answers SERVING."""
        deadline = time.monotonic() + timeout
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
                try:
                    response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if response.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.name} did not become ready:\n{self.log_tail()}")

    async def restart(self) -> None:
        self.kill()
        self.start()
        await self.ready()

    def log_tail(self) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-LOG_TAIL_BYTES:].decode(errors="replace")


class ClusterNode(NatsServer):
    """One nats-server of a JetStream cluster on loopback."""

    def __init__(self, data_dir: Path, name: str, cluster_port: int) -> None:
        super().__init__(data_dir)
        self.name = name
        self.cluster_port = cluster_port
        self.routes: list[int] = []

    def start(self) -> None:
        routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.routes)
        config = self.data_dir / "nats.conf"
        config.write_text(
            f"server_name: {self.name}\n"
            f"listen: 127.0.0.1:{self.port}\n"
            f"max_payload: {NATS_MAX_PAYLOAD}\n"
            f'jetstream {{ store_dir: "{self.data_dir / "js"}" }}\n'
            f"cluster {{ name: conveyor; listen: 127.0.0.1:{self.cluster_port}; "
            f"routes: [{routes}] }}\n"
        )
        with (self.data_dir / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"nats-server {self.name} did not start")


def nats_cluster(base: Path, size: int = 3) -> list[ClusterNode]:
    """``size`` nats-servers routed to each other, not started."""
    nodes = []
    for index in range(size):
        data_dir = base / f"n{index + 1}"
        data_dir.mkdir(parents=True)
        nodes.append(ClusterNode(data_dir, f"n{index + 1}", free_port()))
    for node in nodes:
        node.routes = [other.cluster_port for other in nodes if other is not node]
    return nodes


class Cluster:
    """The Conveyor services as processes around a NATS URL (one server or a list)."""

    def __init__(self, tmp_path: Path, nats_url: str, replicas: int = 1, **env: str) -> None:
        self.tmp_path = tmp_path
        self.log_dir = tmp_path / "logs"
        self.log_dir.mkdir(exist_ok=True)
        self.db_path = tmp_path / "conveyor.db"
        self.database: Path | str = env.get("CONVEYOR_DATABASE_URL") or self.db_path
        """The store's database: the SQLite file, or the URL given in ``env``."""
        self.nats_url = nats_url
        store_port = free_port()
        self.base_env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        self.base_env.update(
            {
                "PYTHONPATH": str(ROOT),
                "CONVEYOR_NATS_URL": nats_url,
                "CONVEYOR_DATABASE_URL": f"sqlite+aiosqlite:///{self.db_path}",
                "CONVEYOR_STORE_ADDR": f"127.0.0.1:{store_port}",
                "CONVEYOR_STREAM_REPLICAS": str(replicas),
                "CONVEYOR_ACK_WAIT_SECONDS": str(ACK_WAIT_SECONDS),
                "CONVEYOR_SHUTDOWN_GRACE_SECONDS": "1",
                "CONVEYOR_LOG_LEVEL": "warning",
                "CONVEYOR_METRICS_LISTEN": "127.0.0.1:0",  # many services on one host
                "CONVEYOR_HTTP_LISTEN": "off",  # its default port may be taken on this host
                **env,
            }
        )
        self.store = self._service("store", ["store"], "STORE_LISTEN", store_port)
        self.gateway = self._service("gateway", ["gateway"], "GATEWAY_LISTEN")
        self.scheduler = self._service("scheduler", ["scheduler"], "SCHEDULER_LISTEN")
        self.workers: list[Service] = []
        self.extra: list[Service] = []
        """More services the test made (store replicas), stopped with the rest."""
        self._channel: grpc.aio.Channel | None = None

    def _service(
        self,
        name: str,
        module: list[str],
        listen_var: str,
        port: int = 0,
        env: dict[str, str] | None = None,
    ) -> Service:
        port = port or free_port()
        address = f"127.0.0.1:{port}"
        service_env = {**self.base_env, f"CONVEYOR_{listen_var}": address, **(env or {})}
        argv = [sys.executable, "-m", *module]
        return Service(name, argv, service_env, address, self.log_dir)

    @property
    def services(self) -> list[Service]:
        return [self.gateway, self.scheduler, *self.workers, self.store, *self.extra]

    def add_worker(self, *args: str, **env: str) -> Service:
        """A worker process (not started) serving the built-ins and the test types."""
        name = f"worker-{len(self.workers) + 1}"
        worker = self._service(
            name,
            ["worker", "--import", "tests.faults.handlers", *args],
            "WORKER_LISTEN",
            env={"CONVEYOR_WORKER_ID": name, **env},
        )
        self.workers.append(worker)
        return worker

    async def start(self, workers: int = 1, scheduler: bool = False) -> None:
        """Starts the store, the workers, the scheduler and the gateway, ready to submit."""
        while len(self.workers) < workers:
            self.add_worker()
        # The store first (it declares the streams), then the rest side by side.
        self.store.start()
        await self.store.ready()
        rest = [*self.workers, self.gateway] + ([self.scheduler] if scheduler else [])
        for service in rest:
            service.start()
        await asyncio.gather(*(s.ready() for s in rest))
        await self.wait_types_known()

    @property
    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(
                self.gateway.address,
                options=[
                    ("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", 500),
                ],
            )
        return self._channel

    @property
    def stub(self) -> tasks_pb2_grpc.TaskServiceStub:
        return tasks_pb2_grpc.TaskServiceStub(self.channel)

    @contextlib.asynccontextmanager
    async def store_stub(self) -> AsyncIterator[tasks_pb2_grpc.TaskServiceStub]:
        """The store's TaskService, which the scheduler reconciles against (every
        namespace, which the gateway answers no client)."""
        async with grpc.aio.insecure_channel(self.store.address) as channel:
            yield tasks_pb2_grpc.TaskServiceStub(channel)

    async def wait_types_known(self, timeout: float = 30.0) -> None:
        """Waits until the gateway accepts the test's types (workers register them)."""
        probe = tasks_pb2.SubmitTaskRequest(
            text_processing=tasks_pb2.TextProcessingInput(text="probe")
        )
        async with asyncio.timeout(timeout):
            while True:
                try:
                    # An idempotency key keeps the probe one task however often it is sent.
                    probe.options.idempotency_key = "fault-test-probe"
                    await self.stub.SubmitTask(probe, timeout=5)
                    return
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.2)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
        for service in self.services:
            service.terminate()
        deadline = time.monotonic() + 10
        for service in self.services:
            if service.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    service.wait(max(0.1, deadline - time.monotonic()))
            service.reap()

    def dead(self) -> dict[str, str]:
        """The services that started and are no longer running, with their last logs."""
        return {
            s.name: s.log_tail() for s in self.services if s.process is not None and not s.alive
        }

    def logs(self) -> str:
        return "\n".join(f"----- {s.name} -----\n{s.log_tail()}" for s in self.services)


@pytest.fixture
def nats_file_server(tmp_path: Path) -> Iterator[NatsServer]:
    """One nats-server with file storage; restart it with ``kill()`` and ``start()``."""
    server = NatsServer(tmp_path / "nats")
    server.data_dir.mkdir()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def cluster(
    nats_file_server: NatsServer, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Cluster]:
    """The services as processes around one nats-server, not yet started."""
    running = Cluster(tmp_path, nats_file_server.url)
    try:
        yield running
    finally:
        if _failed(request):
            print(running.logs())
        await running.close()


@pytest.fixture
def nats_nodes(tmp_path: Path) -> Iterator[list[ClusterNode]]:
    """A running 3-node JetStream cluster on loopback."""
    nodes = nats_cluster(tmp_path / "nats")
    for node in nodes:
        node.start()
    yield nodes
    for node in nodes:
        node.stop()


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "rep_call", None)
    return report is None or bool(report.failed)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    if call.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
