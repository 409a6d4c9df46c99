"""Worker middleware: cross-cutting concerns wrapped around every handler call.

As in dramatiq, a middleware is a class whose hooks do nothing until it overrides them:
``around`` wraps the handler call (heartbeats, time limits, cancellation, timing),
``outcome`` decides what a failed attempt comes to (retries), and ``after_event`` sees
each event the stream recorded (metrics). Each concern is one class, outside the runner.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Container, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nats.aio.msg import Msg

from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.context import TaskContext
from conveyor.errors import TaskCancelled, TaskTimeout
from conveyor.registry import TaskType
from worker.attempt import Beats

if TYPE_CHECKING:
    from worker.outcomes import Outcome

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One delivery of a task to this worker."""

    msg: Msg
    message: events_pb2.TaskMessage
    task_type: TaskType
    ctx: TaskContext


Call = Callable[[Job], Coroutine[Any, Any, tasks_pb2.TaskResult]]


class Middleware:
    """Base class: every hook does nothing."""

    async def around(self, job: Job, call_next: Call) -> tasks_pb2.TaskResult:
        """Runs the rest of the chain for ``job``."""
        return await call_next(job)

    def outcome(self, job: Job, error: Exception) -> Outcome | None:
        """What an attempt that raised ``error`` comes to; None leaves it to the next."""
        return None

    def after_event(self, message: events_pb2.TaskMessage, kind: str) -> None:
        """The stream recorded an event of ``kind`` for the task (``started`` also when
        an outcome carries its attempt's start)."""


def overriding(middleware: Sequence[Middleware], hook: str) -> list[Middleware]:
    """The middleware whose ``hook`` does something, so a per-event loop skips the rest."""
    base = getattr(Middleware, hook)
    return [m for m in middleware if getattr(type(m), hook) is not base]


def chain(middleware: Sequence[Middleware], innermost: Call) -> Call:
    """One callable running the middleware outermost-first around ``innermost``; those
    that do not wrap the call (no ``around`` of their own) cost no step."""
    call = innermost
    for layer in reversed(overriding(middleware, "around")):
        call = _bind(layer, call)
    return call


def _bind(layer: Middleware, call_next: Call) -> Call:
    async def call(job: Job) -> tasks_pb2.TaskResult:
        return await layer.around(job, call_next)

    return call


class Heartbeat(Middleware):
    """Tells JetStream the task is still being worked on, so a long task keeps its lease
    for as long as its worker lives, and loses it within ``ack_wait`` when it dies: every
    ``interval``, for every running handler at once (``worker.attempt.Beats``)."""

    def __init__(self, ack_wait: float) -> None:
        self.interval = max(0.5, ack_wait / 3)
        self._beats = Beats(self.interval)

    async def around(self, job: Job, call_next: Call) -> tasks_pb2.TaskResult:
        beats = self._beats
        beats.hold(job.msg)
        try:
            return await call_next(job)
        finally:
            beats.release(job.msg)


class TimeLimit(Middleware):
    """Stops an attempt that runs past its task's timeout.

    What ``asyncio.timeout`` does for one level, with a timer calling ``cancel`` on the
    attempt's task, at a fraction of its cost per task: the attempt fails with a timeout
    only when the cancel was the timer's own (a shutdown's cancel stays a cancel)."""

    async def around(self, job: Job, call_next: Call) -> tasks_pb2.TaskResult:
        limit = job.ctx.timeout
        task = asyncio.current_task()
        assert task is not None, "a handler runs in a task"
        cancelling = task.cancelling()
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = task.get_loop().call_later(limit, expire)
        try:
            return await call_next(job)
        except asyncio.CancelledError:
            if expired:
                expired = False
                if task.uncancel() <= cancelling:
                    raise TaskTimeout(f"attempt exceeded its time limit of {limit:g}s") from None
            raise
        finally:
            timer.cancel()
            if expired:  # the handler swallowed the timer's cancel: take it back all the same
                task.uncancel()


class Cancellation(Middleware):
    """Stops a running handler when a client cancels its task."""

    def __init__(self, cancelled: Container[str] | None = None) -> None:
        self._running: dict[str, tuple[asyncio.Task[tasks_pb2.TaskResult], TaskContext]] = {}
        self.cancelled: Container[str] = cancelled if cancelled is not None else set()
        """Ids of tasks known to be cancelled: such a handler is not started at all (the
        signal may arrive after the check before the start, before it is registered)."""

    def cancel(self, task_id: str) -> bool:
        """Cancels the task's handler if it runs here; True when it did."""
        running = self._running.get(task_id)
        if running is None:
            return False
        handler, ctx = running
        ctx.cancelled.set()
        handler.cancel()
        return True

    async def around(self, job: Job, call_next: Call) -> tasks_pb2.TaskResult:
        task_id = job.message.task_id
        if task_id in self.cancelled:
            job.ctx.cancelled.set()
            raise TaskCancelled("cancelled by a client")
        handler = asyncio.create_task(call_next(job))
        self._running[task_id] = (handler, job.ctx)
        try:
            result: tasks_pb2.TaskResult = await handler
            return result
        except asyncio.CancelledError:
            current = asyncio.current_task()
            own_cancel = current is not None and current.cancelling() > 0
            if job.ctx.cancelled.is_set() and not own_cancel:
                raise TaskCancelled("cancelled by a client") from None
            handler.cancel()
            raise
        finally:
            if self._running.get(task_id, (None,))[0] is handler:
                del self._running[task_id]
