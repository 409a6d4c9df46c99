from __future__ import annotations

import multiprocessing
import pickle
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.registry import Registry
from worker.handlers import register_builtins, text_processing

BUILTIN_TYPES = ["ai_summarization", "batch_processing", "image_processing", "text_processing"]


async def _custom_text(ctx: object, payload: dict[str, object]) -> dict[str, object]:
    return payload


def test_registers_the_four_builtin_types_with_their_defaults() -> None:
    registry = Registry()
    register_builtins(registry)

    assert registry.names() == BUILTIN_TYPES
    defaults = {
        name: (t.cpu_bound, t.timeout, t.max_attempts)
        for name in registry.names()
        if (t := registry.get(name)) is not None
    }
    assert defaults == {
        "ai_summarization": (True, 60.0, 3),
        "batch_processing": (False, 300.0, 3),
        "image_processing": (True, 120.0, 3),
        "text_processing": (True, 60.0, 3),
    }


def test_registering_twice_is_harmless_and_keeps_user_overrides() -> None:
    registry = Registry()
    registry.task("text_processing")(_custom_text)

    register_builtins(registry)
    register_builtins(registry)

    text = registry.get("text_processing")
    assert text is not None and text.handler is _custom_text
    assert len(registry.names()) == 4


def test_importing_registers_nothing_by_itself() -> None:
    # A fresh interpreter, since other tests or the worker may fill the default registry.
    script = (
        "import worker.handlers\n"
        "from conveyor.registry import default_registry\n"
        "print(default_registry.names())"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    assert output.strip() == "[]"


def test_cpu_bound_handlers_run_in_a_spawned_process() -> None:
    registry = Registry()
    register_builtins(registry)
    handlers = [t.handler for name in registry.names() if (t := registry.get(name)) and t.cpu_bound]
    assert all(pickle.loads(pickle.dumps(h)) is h for h in handlers)

    request = tasks_pb2.TextProcessingInput(text="Hello there, world.")
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        result = pool.submit(text_processing, request).result(timeout=60)

    assert (result.words, result.sentences) == (3, 1)
