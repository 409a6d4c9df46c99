"""Coalescing a handler's progress reports into a few events per second.

Every progress event is a new version of the task, a history row in the store and an
update to every watcher: a batch of chunk size 1 over 20,000 items reported 20,000 of
them. Only the latest value matters, so reports closer together than the interval wait,
each replacing the one before, and the last one is sent before the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.jsonlike import valid_text

log = logging.getLogger(__name__)

Send = Callable[[int, int, str], Awaitable[None]]


def progress_report(current: int, total: int, text: str) -> tasks_pb2.TaskProgress:
    """What a handler reported, checked here so its mistake is a clear error at its call
    (a message protobuf refuses would otherwise fail deep in the publish)."""
    for name, value in (("current", current), ("total", total)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
            raise ValueError(f"progress {name} must be an int from 0 to 2**64-1 (got {value!r})")
    if not isinstance(text, str):
        raise TypeError(f"progress message must be a str (got {type(text).__name__})")
    return tasks_pb2.TaskProgress(current=current, total=total, message=valid_text(text[:500]))


class ProgressThrottle:
    """Sends at most one progress report per ``interval`` seconds, always the latest.

    The first report goes at once (a watcher sees the task move); later ones within the
    interval are held, and one timer sends whichever is latest when the interval ends.
    """

    def __init__(self, send: Send, interval: float) -> None:
        self._send = send
        self._interval = interval
        self._latest: tuple[int, int, str] | None = None
        self._sent_at: float | None = None
        self._later: asyncio.Task[None] | None = None
        self._due = asyncio.Event()

    async def report(self, current: int, total: int, message: str) -> None:
        """Records a report; sends it now if the interval since the last one has passed."""
        self._latest = (current, total, message)
        if self._later is not None:
            return  # the held report goes when the interval ends, with this value
        loop = asyncio.get_running_loop()
        wait = 0.0 if self._sent_at is None else self._sent_at + self._interval - loop.time()
        if wait <= 0:
            await self._send_latest()
        else:
            self._due.clear()
            self._later = loop.create_task(self._send_after(wait))

    async def flush(self) -> None:
        """Sends the held report now, if any: called before the outcome, so the final
        progress is recorded. A failure is logged, not raised: progress is advisory."""
        if self._later is None:
            return
        self._due.set()
        with contextlib.suppress(Exception):
            await self._later

    def close(self) -> None:
        """Drops a held report (the attempt was handed back)."""
        if self._later is not None:
            self._later.cancel()
            self._later = None

    async def _send_after(self, wait: float) -> None:
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._due.wait(), wait)
                await self._send_latest()
                if self._latest is None:
                    return
                wait = self._interval  # reported while that one was being sent
        except Exception as exc:
            log.warning("reporting progress failed: %s", exc)
            raise
        finally:
            self._later = None

    async def _send_latest(self) -> None:
        latest, self._latest = self._latest, None
        if latest is None:
            return
        self._sent_at = asyncio.get_running_loop().time()
        await self._send(*latest)
