"""Task types the fault tests run, imported by worker processes with
``python -m worker --import tests.faults.handlers``."""

from __future__ import annotations

import asyncio
from typing import Any

from conveyor.context import TaskContext
from conveyor.registry import task


@task("sleep", max_attempts=5, timeout=120)
async def sleep(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Sleeps ``payload['seconds']`` (``payload['again_seconds']`` on later attempts, when
    given): long enough to be caught in flight by a kill or a shutdown."""
    seconds = payload.get("seconds", 1.0)
    if ctx.attempt > 1:
        seconds = payload.get("again_seconds", seconds)
    await asyncio.sleep(float(seconds))
    return {"attempt": ctx.attempt, "worker": ctx.worker_id}
