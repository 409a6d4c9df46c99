"""The ``noop`` task type of ``conveyor bench``: it returns at once, so what a benchmark
measures is Conveyor itself, not a handler.

It is served only by workers that import this module; a worker started without it does
not register the type, and the gateway refuses ``noop`` tasks as unknown::

    python -m worker --import conveyor.bench.noop
    CONVEYOR_WORKER_IMPORTS=conveyor.bench.noop conveyor dev

Tests that build their own registry call :func:`register` instead.
"""

from __future__ import annotations

from typing import Any

from conveyor.bench._options import NOOP
from conveyor.context import TaskContext
from conveyor.registry import Registry, RetryPolicy, TaskType, default_registry

__all__ = ["NOOP", "NOOP_TYPE", "noop", "register"]


async def noop(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Does nothing and returns an empty result."""
    return {}


NOOP_TYPE = TaskType(
    name=NOOP,
    handler=noop,
    max_attempts=3,
    timeout=30.0,
    retry=RetryPolicy(initial_delay=0.1, max_delay=1.0),
    description="Returns at once with an empty result (conveyor bench).",
)
"""The registry entry of ``noop``."""


def register(registry: Registry) -> None:
    """Registers ``noop`` in ``registry`` unless it is there already."""
    if NOOP not in registry:
        registry.register(NOOP_TYPE)


# `python -m worker --import conveyor.bench.noop` serves whatever importing registered.
register(default_registry)
