"""The four built-in task types, registered through the same API as users' own types.

Importing this package registers nothing; the worker calls :func:`register_builtins`.
The CPU-bound handlers are module-level functions because the worker pickles them by
reference into a spawn-based process pool.
"""

from __future__ import annotations

from conveyor.registry import Registry, RetryPolicy, TaskType
from worker.handlers.batch import batch_processing
from worker.handlers.image import image_processing
from worker.handlers.summarize import ai_summarization
from worker.handlers.text import text_processing

__all__ = [
    "BUILTIN_TASK_TYPES",
    "ai_summarization",
    "batch_processing",
    "image_processing",
    "register_builtins",
    "text_processing",
]

BUILTIN_TASK_TYPES: tuple[TaskType, ...] = (
    TaskType(
        name="text_processing",
        handler=text_processing,
        max_attempts=3,
        timeout=60.0,
        retry=RetryPolicy(),
        cpu_bound=True,
        description="Statistics, top words and transforms of a text.",
    ),
    TaskType(
        name="ai_summarization",
        handler=ai_summarization,
        max_attempts=3,
        timeout=60.0,
        retry=RetryPolicy(),
        cpu_bound=True,
        description="Extractive summary: the text's most central sentences.",
    ),
    TaskType(
        name="batch_processing",
        handler=batch_processing,
        max_attempts=3,
        timeout=300.0,
        retry=RetryPolicy(),
        cpu_bound=False,
        description="One operation over many items, in chunks, with progress.",
    ),
    TaskType(
        name="image_processing",
        handler=image_processing,
        max_attempts=3,
        timeout=120.0,
        retry=RetryPolicy(),
        cpu_bound=True,
        description="Resize, thumbnail, greyscale and rotate an image; convert its format.",
    ),
)
"""The built-in types with their defaults; a task's options can override them."""


def register_builtins(registry: Registry) -> None:
    """Registers the built-in task types, skipping names that are registered already.

    Skipping (rather than failing) lets a user override a built-in by registering
    their own handler under its name first, and makes repeated calls harmless.
    """
    for task_type in BUILTIN_TASK_TYPES:
        if task_type.name not in registry:
            registry.register(task_type)
