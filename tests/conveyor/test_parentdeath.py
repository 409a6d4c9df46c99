"""conveyor dev's children die with it, and start while gRPC is busy in conveyor dev."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from conveyor import parentdeath
from conveyor.dev import Child, start


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie of an exited child counts as gone: nobody here reaps it.
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split(") ", 1)[1].startswith("Z"):
                    return True
        except FileNotFoundError:  # reaped between the two looks
            return True
        time.sleep(0.05)
    return False


def test_a_child_is_terminated_when_the_parent_that_started_it_is_killed() -> None:
    # A middle process starts `sleep` through parentdeath and is then SIGKILLed, as
    # `conveyor dev` would be: the sleep must not live on as an orphan.
    middle = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, subprocess, sys, time\n"
            f"argv = [sys.executable, '-I', {parentdeath.__file__!r}, str(os.getpid()), "
            "'sleep', '60']\n"
            "print(subprocess.Popen(argv).pid, flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert middle.stdout is not None
    grandchild = int(middle.stdout.readline())
    time.sleep(0.5)  # the exec into sleep has happened
    assert not _gone(grandchild, 0.1)
    middle.send_signal(signal.SIGKILL)
    middle.wait()
    assert _gone(grandchild, 10)


def test_a_program_whose_parent_is_already_gone_does_not_run() -> None:
    done = subprocess.run(
        [sys.executable, "-I", parentdeath.__file__, "1", "sh", "-c", "echo ran"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == -signal.SIGTERM
    assert "ran" not in done.stdout


def test_children_start_while_grpc_calls_run_in_the_parent() -> None:
    # grpc/grpc#43055: a child forked (as a preexec_fn makes Python do) while gRPC's poller
    # threads run could abort before its exec; conveyor dev health-checks its children
    # over gRPC while it starts the next. Every child must run its program.
    server = grpc.server(futures.ThreadPoolExecutor(4))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    stop = threading.Event()

    def calls() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while not stop.is_set():
                stub.Check(health_pb2.HealthCheckRequest())

    caller = threading.Thread(target=calls)
    caller.start()
    try:
        time.sleep(0.3)
        codes = []
        for index in range(150):
            child = Child(f"child-{index}", ["true"], dict(os.environ))
            start(child)
            assert child.process is not None
            codes.append(child.process.wait(timeout=30))
    finally:
        stop.set()
        caller.join()
        server.stop(None)
    assert codes == [0] * len(codes)
