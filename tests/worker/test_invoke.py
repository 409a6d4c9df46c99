"""The child processes CPU-bound handlers run in."""

from __future__ import annotations

import os
import signal

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
