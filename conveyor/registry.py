"""The task type registry: handlers registered by type, with their defaults.

The four built-in types are registered in ``worker.handlers`` through the same API a user
calls for their own types::

    from conveyor.registry import task

    @task("send_welcome_email", max_attempts=5, timeout=30)
    async def send_welcome_email(ctx, payload: dict) -> dict:
        ...
        return {"sent": True}

Run a worker with ``python -m worker --import myapp.tasks`` to serve it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from conveyor import subjects


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter between attempts."""

    initial_delay: float = 1.0
    max_delay: float = 300.0
    multiplier: float = 2.0

    def delay(self, failed_attempt: int, jitter: float) -> float:
        """The wait after attempt ``failed_attempt`` (from 1); jitter in [0, 1)."""
        ceiling = min(self.max_delay, self.initial_delay * self.multiplier ** (failed_attempt - 1))
        # Full jitter keeps retries of many tasks from arriving together, with a floor so
        # a retry is never immediate.
        return max(min(self.initial_delay, ceiling) * 0.5, ceiling * jitter)


@dataclass(frozen=True)
class TaskType:
    """A registered task type: its handler and defaults."""

    name: str
    handler: Callable[..., Any]
    max_attempts: int = 3
    timeout: float = 300.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    cpu_bound: bool = False
    """Run ``handler(input)`` (a plain function) in the worker's process pool."""
    description: str = ""


class Registry:
    """Task types by name."""

    def __init__(self) -> None:
        self._types: dict[str, TaskType] = {}

    def register(self, task_type: TaskType) -> TaskType:
        """Adds a type; registering a name twice is an error."""
        if not subjects.TASK_TYPE_PATTERN.match(task_type.name):
            raise ValueError(
                f"task type {task_type.name!r} must match {subjects.TASK_TYPE_PATTERN.pattern}"
            )
        if task_type.name in self._types:
            raise ValueError(f"task type {task_type.name!r} is registered already")
        if not 1 <= task_type.max_attempts <= 100:
            raise ValueError("max_attempts must be between 1 and 100")
        if task_type.timeout <= 0:
            raise ValueError("timeout must be positive")
        is_async = inspect.iscoroutinefunction(task_type.handler)
        if task_type.cpu_bound == is_async:
            raise ValueError(
                "a cpu_bound handler must be a plain function, any other an async function"
            )
        self._types[task_type.name] = task_type
        return task_type

    def task(
        self,
        name: str,
        *,
        max_attempts: int = 3,
        timeout: float = 300.0,
        retry: RetryPolicy | None = None,
        cpu_bound: bool = False,
        description: str = "",
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator registering a handler for task type ``name``."""

        def decorate(handler: Callable[..., Any]) -> Callable[..., Any]:
            self.register(
                TaskType(
                    name=name,
                    handler=handler,
                    max_attempts=max_attempts,
                    timeout=timeout,
                    retry=retry or RetryPolicy(),
                    cpu_bound=cpu_bound,
                    description=description or (inspect.getdoc(handler) or "").split("\n")[0],
                )
            )
            return handler

        return decorate

    def get(self, name: str) -> TaskType | None:
        """The type called name, or None."""
        return self._types.get(name)

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._types)

    def __contains__(self, name: object) -> bool:
        return name in self._types


default_registry = Registry()
"""The registry workers serve; ``task`` registers into it."""

task = default_registry.task
