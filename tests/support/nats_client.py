"""A NATS connection of the test itself, for looking into the streams."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import nats
from nats.js import JetStreamContext


@contextlib.asynccontextmanager
async def jetstream(url: str) -> AsyncIterator[JetStreamContext]:
    """A JetStream context on ``url`` (one URL or a comma-separated list)."""
    nc = await nats.connect(url.split(","), max_reconnect_attempts=-1, reconnect_time_wait=0.5)
    try:
        yield nc.jetstream(timeout=10)
    finally:
        await nc.close()
