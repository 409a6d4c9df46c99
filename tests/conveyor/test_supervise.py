"""conveyor dev's supervision, on real short-lived processes and a clock the test moves:
a child that exits is restarted after a doubling, capped backoff and left stopped after
failing too often in a row; the others are not touched."""

from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import dataclass, field

from conveyor.supervise import BACKOFF_MAX, GIVE_UP_AFTER, STABLE_AFTER, Supervisor


@dataclass
class Proc:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    spawned: list[subprocess.Popen[bytes]] = field(default_factory=list)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def start(child: Proc) -> None:
    child.starts += 1
    child.process = subprocess.Popen(child.argv)
    child.spawned.append(child.process)


def exited(child: Proc) -> None:
    assert child.process is not None
    child.process.wait(timeout=30)


def test_a_crashing_child_is_restarted_with_backoff_then_given_up() -> None:
    clock, out = Clock(), io.StringIO()
    supervisor = Supervisor[Proc](start, clock, out)
    crashing = Proc("worker-1", [sys.executable, "-c", "raise SystemExit(3)"])
    steady = Proc("gateway", [sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        supervisor.start(crashing)
        supervisor.start(steady)
        delays = []
        while not supervisor.given_up():
            exited(crashing)
            supervisor.check([crashing, steady])  # notices the exit, schedules the restart
            if supervisor.given_up():
                break
            delay = float(out.getvalue().rsplit("restarting it in ", 1)[1].split("s")[0])
            delays.append(delay)
            clock.now += delay - 0.01
            supervisor.check([crashing, steady])
            assert crashing.starts == len(delays)  # not before its backoff is over
            clock.now += 0.01
            supervisor.check([crashing, steady])
            assert crashing.starts == len(delays) + 1
        assert supervisor.given_up() == ["worker-1"]
        assert crashing.starts == GIVE_UP_AFTER
        assert delays == [1, 2, 4, 8, 16][: GIVE_UP_AFTER - 1]
        assert "worker-1 exited (code 3); restarting it in 1s" in out.getvalue()
        assert "not restarting it" in out.getvalue()
        clock.now += 1000
        supervisor.check([crashing, steady])
        assert crashing.starts == GIVE_UP_AFTER
        assert steady.starts == 1 and steady.process is not None
        assert steady.process.poll() is None
    finally:
        for child in (crashing, steady):
            for process in child.spawned:
                process.kill()
                process.wait()


def test_a_child_that_ran_a_while_starts_its_backoff_afresh() -> None:
    clock, out = Clock(), io.StringIO()
    supervisor = Supervisor[Proc](start, clock, out)
    child = Proc("worker-2", [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), 9)"])
    supervisor.start(child)
    for _ in range(3):
        exited(child)
        supervisor.check([child])
        clock.now += BACKOFF_MAX
        supervisor.check([child])
    assert "restarting it in 4s" in out.getvalue()
    clock.now += STABLE_AFTER
    exited(child)
    supervisor.check([child])
    assert (
        out.getvalue().rstrip().endswith("worker-2 exited (killed by SIGKILL); restarting it in 1s")
    )
