"""A KV watch that says it has caught up too early, as nats-py's can (issue #842)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any


class EarlyCaughtUp:
    """A watch that says it has caught up before the entries present at its start have
    arrived, as nats-py's can (issue #842); they come half a second later."""

    def __init__(self, watcher: Any) -> None:
        self.watcher = watcher

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._entries()

    async def _entries(self) -> AsyncIterator[Any]:
        yield None
        await asyncio.sleep(0.5)
        async for entry in self.watcher:
            yield entry

    async def stop(self) -> None:
        await self.watcher.stop()
