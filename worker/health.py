"""The worker's health: SERVING only while every consume loop keeps fetching.

A worker whose process is alive but whose fetch loop has died or hangs consumes nothing,
while a naive health check still says SERVING (a known Celery and Hatchet failure). Each
``TypeConsumer`` stamps ``last_poll`` whenever a fetch round returns, empty or not; the
watchdog turns the worker NOT_SERVING when a loop has ended or has not stamped for
``stall_after`` seconds, and SERVING again once every loop fetches again.

A loop that waits on purpose is not stalled: while every slot is busy, or its queue is
paused, it does not fetch, and the time it spends so does not count.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

log = logging.getLogger(__name__)

STALL_AFTER = 10.0
"""Seconds without a fetch round before a loop counts as stalled: several times the
longest round (long polls well under a second) plus the longest error backoff (5 s)."""
CHECK_INTERVAL = 1.0


class Polling(Protocol):
    """What the watchdog reads of a consume loop's consumer."""

    @property
    def task_type(self) -> str: ...

    @property
    def last_poll(self) -> float: ...


Loops = Callable[[], Iterable[tuple[Polling, "asyncio.Task[None]"]]]


class ConsumeWatchdog:
    """Reports NOT_SERVING while any consume loop has ended or stopped fetching."""

    def __init__(
        self,
        loops: Loops,
        resting: Callable[[str], bool],
        set_serving: Callable[[bool], Awaitable[None]],
        stall_after: float = STALL_AFTER,
        interval: float = CHECK_INTERVAL,
        on_check: Callable[[int], None] | None = None,
    ) -> None:
        self._loops = loops
        self._resting = resting
        self._set_serving = set_serving
        self.stall_after = stall_after
        self.interval = interval
        self._on_check = on_check
        self._rested_at: dict[str, float] = {}
        self.serving = True

    def problems(self, now: float) -> list[str]:
        """What is wrong with the loops at monotonic time ``now``; empty when healthy."""
        found = []
        for consumer, task in self._loops():
            name = consumer.task_type
            if task.done():
                found.append(f"the consume loop of {name} has ended{_why(task)}")
                continue
            if self._resting(name):
                self._rested_at[name] = now
            idle = now - max(consumer.last_poll, self._rested_at.get(name, 0.0))
            if idle > self.stall_after:
                found.append(f"the consume loop of {name} has not fetched for {idle:.0f}s")
        return found

    async def check(self) -> bool:
        """Looks once and updates the health status when it changed; True when healthy."""
        problems = self.problems(time.monotonic())
        if self._on_check is not None:
            self._on_check(len(problems))
        healthy = not problems
        if healthy != self.serving:
            self.serving = healthy
            await self._set_serving(healthy)
            if healthy:
                log.info("every consume loop is fetching again: SERVING")
            else:
                log.error("reporting NOT_SERVING: %s", "; ".join(problems))
        return healthy

    async def run(self) -> None:
        """Checks every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            await self.check()


def _why(task: asyncio.Task[None]) -> str:
    if task.cancelled():
        return " (cancelled)"
    error = task.exception()
    return f" ({type(error).__name__}: {error})" if error else ""
