"""Polling JetStream state into gauges: the loop every probe runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

PROBE_INTERVAL = 5.0
"""Seconds between two reads of JetStream state (queue depth, apply lag)."""


async def every(interval: float, poll: Callable[[], Awaitable[None]], what: str) -> None:
    """Calls ``poll`` now and then every ``interval`` seconds until cancelled; a failed
    round is logged and the next one tried."""
    while True:
        try:
            await poll()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("reading %s failed: %s", what, exc)
        await asyncio.sleep(interval)
