"""Calling a handler: typed input in, typed result out, CPU-bound work in a child process.

CPU-bound handlers run in child processes, one task per process at a time, so a handler
past its time limit, cancelled, or crashing its process can be killed and replaced without
touching the other tasks in flight.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import threading
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor
from typing import Any

from google.protobuf import json_format

from conveyor import jsonlike
from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.context import TaskContext
from conveyor.errors import NonRetryable
from conveyor.registry import TaskType
from conveyor.tasks import CUSTOM_FIELD
from conveyor.tracebacks import remember

log = logging.getLogger(__name__)


class WorkerProcessDied(Exception):
    """Raised when the child process running a CPU-bound handler died."""


JOIN_TIMEOUT = 5.0
"""How long stopping waits for each executor's manager thread (its child is killed first,
so it ends at once; the bound keeps a stuck one from holding the worker's exit)."""


class ProcessSlots:
    """A fixed number of single-process executors, each replaced when it must be killed."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._free: asyncio.Queue[ProcessPoolExecutor] | None = None
        self._context = multiprocessing.get_context("spawn")  # fork is unsafe with gRPC
        self._live: set[ProcessPoolExecutor] = set()  # free or running a handler
        self._ending: list[threading.Thread] = []  # manager threads of killed executors

    def _new(self) -> ProcessPoolExecutor:
        executor = ProcessPoolExecutor(
            max_workers=1, mp_context=self._context, initializer=ignore_interrupts
        )
        self._live.add(executor)
        return executor

    def _kill(self, executor: ProcessPoolExecutor) -> None:
        """Kills the executor's child; its manager thread is joined at shutdown (killed
        here without waiting: the event loop must not block on it)."""
        self._live.discard(executor)
        self._ending = [thread for thread in self._ending if thread.is_alive()]
        thread = getattr(executor, "_executor_manager_thread", None)
        if thread is not None:
            self._ending.append(thread)
        _kill(executor)

    def _queue(self) -> asyncio.Queue[ProcessPoolExecutor]:
        if self._free is None:
            self._free = asyncio.Queue()
            for _ in range(self._size):
                self._free.put_nowait(self._new())
        return self._free

    async def run(self, fn: Any, arg: Any) -> Any:
        """Runs ``fn(arg)`` in a child process; kills it if this call is cancelled."""
        free = self._queue()
        executor = await free.get()
        replace = False
        try:
            future = asyncio.get_running_loop().run_in_executor(executor, call_in_child, fn, arg)
            return await future
        except BrokenExecutor as exc:
            replace = True
            raise WorkerProcessDied("the process running the handler died") from exc
        except BaseException:
            replace = True  # cancelled or timed out: the child may still be computing
            raise
        finally:
            if replace:
                self._kill(executor)
                executor = self._new()
            free.put_nowait(executor)

    def shutdown(self) -> None:
        """Stops every child process, and waits for each executor's manager thread (those
        free, those still running a handler, and those of executors killed earlier): one
        left running races the interpreter's exit, which then writes to a pipe the thread
        has closed and prints an OSError traceback."""
        executors = list(self._live)
        for executor in executors:
            self._kill(executor)
        for thread in self._ending:
            thread.join(timeout=JOIN_TIMEOUT)
        self._ending = []


def call_in_child(fn: Any, arg: Any) -> Any:
    """Runs in the child process: ``fn(arg)``, its exception carrying the traceback
    formatted here, where its frames are (the worker receives a pickled copy without them)."""
    try:
        return fn(arg)
    except BaseException as exc:
        remember(exc)
        raise


def ignore_interrupts() -> None:
    """Run in each child process first: Ctrl-C in a terminal interrupts the whole process
    group, and a child it reached printed a KeyboardInterrupt traceback while the worker
    shut down (the worker stops its children itself)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _kill(executor: ProcessPoolExecutor) -> None:
    processes = list(getattr(executor, "_processes", {}).values())
    for process in processes:
        process.kill()
    executor.shutdown(wait=False, cancel_futures=True)


def handler_argument(message: events_pb2.TaskMessage) -> Any:
    """What the handler receives: the typed input message, or a dict for custom types."""
    field = message.input.WhichOneof("input")
    if field is None:
        raise NonRetryable("the task has no input")
    if field == CUSTOM_FIELD:
        custom = message.input.custom
        if not custom.json:
            return json_format.MessageToDict(custom.payload)
        try:
            return jsonlike.loads(custom.json)
        except jsonlike.NotJsonLike as exc:
            raise NonRetryable(f"the task's arguments are not a JSON object: {exc}") from exc
    return getattr(message.input, field)


def to_result(message: events_pb2.TaskMessage, output: Any) -> tasks_pb2.TaskResult:
    """The TaskResult holding a handler's return value."""
    field = message.input.WhichOneof("input")
    result = tasks_pb2.TaskResult()
    if field == CUSTOM_FIELD:
        if output is None:
            output = {}
        if not isinstance(output, dict):
            raise NonRetryable(f"handler returned {type(output).__name__}, expected a dict")
        try:
            result.custom.json = jsonlike.dumps(output)
        except jsonlike.NotJsonLike as exc:
            raise NonRetryable(f"the handler's result cannot be stored as JSON: {exc}") from exc
        return result
    expected = type(getattr(result, str(field)))
    if not isinstance(output, expected):
        raise NonRetryable(
            f"handler returned {type(output).__name__}, expected {expected.__name__}"
        )
    getattr(result, str(field)).CopyFrom(output)
    return result


class Invoker:
    """Runs a task's handler in the right place and converts its result."""

    def __init__(self, processes: ProcessSlots) -> None:
        self._processes = processes

    async def __call__(
        self, task_type: TaskType, message: events_pb2.TaskMessage, ctx: TaskContext
    ) -> tasks_pb2.TaskResult:
        argument = handler_argument(message)
        if task_type.cpu_bound:
            output = await self._processes.run(task_type.handler, argument)
        else:
            output = await task_type.handler(ctx, argument)
        return to_result(message, output)
