"""The child processes CPU-bound handlers run in."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from concurrent.futures.process import _ExecutorManagerThread

from worker.invoke import ProcessSlots


def interrupt_handler(_: object) -> object:
    return signal.getsignal(signal.SIGINT)


def interrupted(_: object) -> str:
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C reaches the whole process group
    return "still running"


async def test_children_ignore_ctrl_c() -> None:
    slots = ProcessSlots(1)
    try:
        assert await slots.run(interrupt_handler, None) == signal.SIG_IGN
        assert await slots.run(interrupted, None) == "still running"
    finally:
        slots.shutdown()


def sleeps(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def manager_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if isinstance(t, _ExecutorManagerThread)]


async def test_stopping_ends_every_executor_thread_even_of_killed_and_busy_children() -> None:
    # A manager thread still running at the interpreter's exit races it, which then prints
    # "OSError: Bad file descriptor" from concurrent.futures' exit hook.
    before = set(manager_threads())
    slots = ProcessSlots(2)
    assert await slots.run(sleeps, 0) == 0
    with contextlib.suppress(TimeoutError):  # killed and replaced, as on a time limit
        async with asyncio.timeout(0.5):
            await slots.run(sleeps, 30)
    busy = asyncio.ensure_future(slots.run(sleeps, 30))  # still running when stopping
    await asyncio.sleep(1.0)
    slots.shutdown()
    assert set(manager_threads()) - before == set()
    with contextlib.suppress(BaseException):
        await busy
