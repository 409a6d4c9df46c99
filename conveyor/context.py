"""What a handler can see and do while it runs: who it is, progress, cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

ProgressSink = Callable[[int, int, str], Awaitable[None]]


async def _discard_progress(current: int, total: int, message: str) -> None:
    return None


@dataclass
class TaskContext:
    """Passed to every async handler as its first argument.

    >>> async def handler(ctx: TaskContext, payload: dict) -> dict:  # doctest: +SKIP
    ...     await ctx.progress(1, 2, "half way")
    ...     return {"attempt": ctx.attempt}
    """

    task_id: str
    task_type: str
    attempt: int
    max_attempts: int
    timeout: float
    worker_id: str = ""
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    _progress: ProgressSink = _discard_progress

    async def progress(self, current: int, total: int = 0, message: str = "") -> None:
        """Reports progress; watchers see the latest report within the worker's progress
        interval (CONVEYOR_PROGRESS_INTERVAL_SECONDS), and the last one before the outcome."""
        await self._progress(current, total, message)

    @property
    def is_last_attempt(self) -> bool:
        """True when a failure now fails the task for good."""
        return self.attempt >= self.max_attempts
