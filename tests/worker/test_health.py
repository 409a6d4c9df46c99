"""The consume-loop watchdog's decisions, with stand-in loops (the real worker is checked
in tests/integration/test_worker_health.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from worker.health import ConsumeWatchdog


@dataclass
class Loop:
    task_type: str
    last_poll: float


class Harness:
    def __init__(self) -> None:
        self.loops: list[tuple[Loop, asyncio.Task[None]]] = []
        self.resting: set[str] = set()
        self.statuses: list[bool] = []
        self.counts: list[int] = []
        self.watchdog = ConsumeWatchdog(
            lambda: self.loops,
            lambda name: name in self.resting,
            self._set_serving,
            stall_after=10.0,
            on_check=self.counts.append,
        )

    async def _set_serving(self, serving: bool) -> None:
        self.statuses.append(serving)

    def add(self, name: str, last_poll: float) -> Loop:
        loop = Loop(name, last_poll)
        self.loops.append((loop, asyncio.create_task(asyncio.sleep(3600))))
        return loop


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    yield h
    for _, task in h.loops:
        task.cancel()
    await asyncio.gather(*(task for _, task in h.loops), return_exceptions=True)


async def test_loops_that_fetched_recently_are_healthy(harness: Harness) -> None:
    harness.add("a", last_poll=100.0)
    harness.add("b", last_poll=105.0)
    assert harness.watchdog.problems(now=109.0) == []


async def test_a_loop_that_has_not_fetched_for_too_long_is_stalled(harness: Harness) -> None:
    harness.add("a", last_poll=100.0)
    harness.add("b", last_poll=50.0)
    assert harness.watchdog.problems(now=105.0) == ["the consume loop of b has not fetched for 55s"]


async def test_a_loop_that_ended_is_reported_with_its_reason(harness: Harness) -> None:
    async def crash() -> None:
        raise RuntimeError("boom")

    harness.loops.append((Loop("a", 100.0), asyncio.create_task(crash())))
    await asyncio.sleep(0)
    [problem] = harness.watchdog.problems(now=100.0)
    assert problem == "the consume loop of a has ended (RuntimeError: boom)"


async def test_waiting_on_purpose_does_not_count_as_stalled(harness: Harness) -> None:
    loop = harness.add("a", last_poll=0.0)
    # Every slot busy (or the queue paused) from 0 to 100: no fetch is expected.
    harness.resting.add("a")
    assert harness.watchdog.problems(now=100.0) == []
    harness.resting.clear()
    # Free again: the loop has stall_after seconds to fetch, counted from then.
    assert harness.watchdog.problems(now=109.0) == []
    assert harness.watchdog.problems(now=111.0) != []
    loop.last_poll = 111.0
    assert harness.watchdog.problems(now=112.0) == []


async def test_health_turns_not_serving_and_back_only_on_changes(harness: Harness) -> None:
    loop = harness.add("a", last_poll=0.0)
    assert await harness.watchdog.check() is False
    assert await harness.watchdog.check() is False
    loop.last_poll = float("inf")  # fetched just now, whatever the clock says
    assert await harness.watchdog.check() is True
    assert harness.statuses == [False, True]
    assert harness.counts == [1, 1, 0]
