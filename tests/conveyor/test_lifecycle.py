"""The shared lifecycle: what a start made is stopped in reverse, once, even half-made."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from conveyor.lifecycle import Lifecycle


class Server:
    def __init__(self, done: list[str]) -> None:
        self.done = done

    async def stop(self, grace: float) -> None:
        self.done.append(f"server {grace}")


async def test_stop_undoes_the_start_in_reverse_once() -> None:
    done: list[str] = []
    life = Lifecycle()

    async def close(name: str) -> None:
        done.append(name)

    life.on_stop(close, "nats")
    life.on_stop_sync(lambda: done.append("pool"))
    running = life.task(asyncio.sleep(3600), "poll")
    life.server(Server(done))
    await life.stop(2.5)
    assert done == ["server 2.5", "pool", "nats"]
    assert running.cancelled()
    await life.stop()
    assert done == ["server 2.5", "pool", "nats"]


async def test_a_failing_step_does_not_stop_the_rest() -> None:
    done: list[str] = []
    life = Lifecycle()

    async def fail() -> None:
        raise RuntimeError("catalog stuck")

    life.on_stop_sync(lambda: done.append("metrics"))
    life.on_stop(fail)
    with pytest.raises(RuntimeError, match="catalog stuck"):
        await life.stop()
    assert done == ["metrics"]


async def test_a_task_that_lost_its_cancel_is_cancelled_again() -> None:
    """A loop that lost its cancel (as ``asyncio.wait_for`` can on Python 3.11, CPython
    issue 86296) still ends at stop instead of holding the stop forever."""
    lost = asyncio.Event()

    async def poll_forever() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        lost.set()
        while True:
            await asyncio.sleep(0.05)

    life = Lifecycle()
    running = life.task(poll_forever(), "poll")
    await asyncio.sleep(0)
    stopping = asyncio.create_task(life.stop())
    done, _ = await asyncio.wait({stopping}, timeout=10)
    assert stopping in done, "stop waited on a task that lost its cancel"
    assert lost.is_set() and running.cancelled()
