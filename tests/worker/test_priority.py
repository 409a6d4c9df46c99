"""A worker can run at a lower CPU priority than the services that answer clients."""

from __future__ import annotations

import os
import threading

import pytest

from conveyor.config import ConfigError, WorkerSettings
from worker.app import lower_priority


def _in_thread(*steps: int) -> list[int]:
    """Lowers a fresh thread's priority to each of ``steps`` in turn (niceness is per
    thread on Linux, so the test process keeps its own); the niceness after each."""
    seen: list[int] = []

    def run() -> None:
        for nice in steps:
            lower_priority(nice)
            seen.append(os.getpriority(os.PRIO_PROCESS, 0))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return seen


def test_the_priority_is_lowered_and_never_raised_again() -> None:
    start = os.getpriority(os.PRIO_PROCESS, 0)
    assert _in_thread(start + 3, start + 1, start + 5) == [start + 3, start + 3, start + 5]
    assert os.getpriority(os.PRIO_PROCESS, 0) == start  # the test's own thread untouched


def test_the_worker_niceness_is_read_and_bounded() -> None:
    assert WorkerSettings.from_env({}).nice == 0
    assert WorkerSettings.from_env({"CONVEYOR_WORKER_NICE": "10"}).nice == 10
    for bad in ("20", "-1", "high"):
        with pytest.raises(ConfigError, match="CONVEYOR_WORKER_NICE"):
            WorkerSettings.from_env({"CONVEYOR_WORKER_NICE": bad})
