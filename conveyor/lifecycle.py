"""A service's lifecycle: what ``start()`` makes is stopped by ``stop()``, in reverse.

Every service's ``start()`` registers each thing it starts right after starting it (a
connection to close, a background task to cancel, a server to stop), and ``stop()`` is one
call. A start that fails half-way leaves only what it got to, and ``stop()`` stops exactly
that, once::

    life = Lifecycle()
    nc = await nats.connect(url)
    life.on_stop(nc.close)
    life.task(poll_forever(), "poll")
    await life.stop()  # cancels the poll, then closes the connection
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, Protocol

P = ParamSpec("P")

log = logging.getLogger(__name__)


class GracefulServer(Protocol):
    """A server stopped with a grace period for the calls in flight (conveyor.server)."""

    async def stop(self, grace: float) -> None: ...


class Lifecycle:
    """What a running service holds, on an :class:`contextlib.AsyncExitStack`."""

    def __init__(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        self._grace = 0.0

    def on_stop(
        self, callback: Callable[P, Awaitable[object]], *args: P.args, **kwargs: P.kwargs
    ) -> None:
        """Awaits ``callback(*args, **kwargs)`` at stop, before what was registered earlier."""
        self._stack.push_async_callback(callback, *args, **kwargs)

    def on_stop_sync(self, callback: Callable[[], object]) -> None:
        """Calls ``callback()`` at stop, in the same order as :meth:`on_stop`."""
        self._stack.callback(callback)

    def task(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Runs ``coro`` as a task, cancelled and waited for at stop."""
        task = asyncio.create_task(coro, name=name)
        self._stack.push_async_callback(cancel_and_wait, task)
        return task

    def server(self, server: GracefulServer) -> None:
        """Stops ``server`` at stop with the grace period that :meth:`stop` is given."""
        self._stack.push_async_callback(lambda: server.stop(self._grace))

    async def stop(self, grace: float = 1.0) -> None:
        """Stops everything registered, newest first; a failing step does not stop the rest
        from running (its error is raised at the end). Registering starts again from empty."""
        self._grace = grace
        await self._stack.aclose()


CANCEL_AGAIN = 1.0
"""Seconds a cancelled task has to end before it is cancelled again."""


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancels ``task`` and waits for it to end; its cancellation is not an error.

    Cancelled again while it runs on: on Python 3.11 a cancel that arrives in the loop
    turn that answers an ``asyncio.wait_for`` (every nats-py request) is lost (CPython
    issue 86296), and a loop that lost it would otherwise keep stop() waiting forever."""
    task.cancel()
    while not (await asyncio.wait({task}, timeout=CANCEL_AGAIN))[0]:
        log.warning(
            "task %s still runs %.0f s after it was cancelled; cancelling it again",
            task.get_name(),
            CANCEL_AGAIN,
        )
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
