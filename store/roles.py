"""A store replica's role: the writer (it holds the lease, store.lease, and applies
events, trims EVENTS and runs retention) or a standby (it follows the writer, store.follow).
Both answer every call: reads come from the database, writes are events on NATS.

Becoming the writer: take the lease, claim the database with its epoch (which waits for
a batch of the old writer in flight and refuses every later one), stop following, then
start applying from the applied sequence. Losing it (not renewed in time, taken over, or
a batch refused by the database): stop applying at once, then follow again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from conveyor.lifecycle import cancel_and_wait
from conveyor.metrics import StoreMetrics
from store.follow import Follower
from store.lease import WriterLease
from store.repository import Fenced, TaskRepository
from store.watch import WatchHub

log = logging.getLogger(__name__)

STOPPING = "stopping"
"""Why a replica stands by when it is stopped (routine, so logged at info)."""

Duties = Callable[[], Awaitable[list[asyncio.Task[None]]]]
"""Starts the writer's work; its tasks. One that fails (fenced) or is cancelled ends the
term; one may also have nothing to do and return (retention switched off)."""


class Roles:
    """Follows the lease: :meth:`start` decides once, :meth:`run` keeps deciding."""

    def __init__(
        self,
        lease: WriterLease,
        repository: TaskRepository,
        hub: WatchHub,
        follower: Callable[[], Follower],
        duties: Duties,
        metrics: StoreMetrics,
    ) -> None:
        self._lease = lease
        self._repository = repository
        self._hub = hub
        self._follower = follower
        self._duties = duties
        self._metrics = metrics
        self._writing: list[asyncio.Task[None]] = []
        self._following: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    @property
    def writer(self) -> bool:
        return bool(self._writing)

    async def start(self) -> None:
        """The first decision, before the replica serves: a lone store (``conveyor dev``,
        a restart after a clean stop) is the writer at once."""
        await self._step()

    async def run(self) -> None:
        """Keeps the role the lease gives until cancelled."""
        while True:
            self._wake.clear()
            try:
                async with asyncio.timeout(self._lease.interval):
                    await self._wake.wait()  # or sooner, when a duty ends
            except TimeoutError:
                pass
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("deciding the store's role failed")

    async def _step(self) -> None:
        if any(_failed(task) for task in self._writing):
            await self._stand_by(self._ended_why())
            self._lease.drop()
        floor = 0
        if not self._writing:
            try:
                floor = await self._repository.writer_epoch()
            except Exception as exc:  # the database away: no writer can start anyway
                log.warning("reading the writer epoch failed: %r", exc)
                self._ensure_following()
                return
        held = await self._lease.tick(floor)
        if held and not self._writing:
            await self._become_writer()
        elif not held and self._writing:
            await self._stand_by("the writer lease was lost")
        self._ensure_following()

    async def _become_writer(self) -> None:
        epoch = self._lease.epoch
        try:
            claimed = await self._repository.claim_writer(epoch, self._lease.seconds / 4)
        except Exception as exc:
            log.warning("claiming the database for epoch %d failed: %r", epoch, exc)
            claimed = False
        if not claimed:
            self._lease.drop()
            return
        await self._stop_following()
        try:
            self._writing = await self._duties()
        except Fenced as exc:
            log.warning("%s", exc)
            self._lease.drop()
            return
        for task in self._writing:
            task.add_done_callback(lambda _: self._wake.set())
        # What the old writer committed after this replica's last look at the database.
        self._hub.refresh()
        self._metrics.leader.set(1)
        self._metrics.takeovers.inc()
        log.info("this store replica is the writer (lease epoch %d)", epoch)

    def _ended_why(self) -> str:
        for task in self._writing:
            if _failed(task) and not task.cancelled():
                error = task.exception()
                if isinstance(error, Fenced):
                    return str(error)
                if error is not None:
                    return f"{task.get_name()} failed: {error!r}"
        return "a writer task ended"

    async def _stand_by(self, why: str) -> None:
        writing, self._writing = self._writing, []
        self._metrics.leader.set(0)
        # A task may have failed already (fenced, while the lease was found lost too).
        ended = await asyncio.gather(
            *(cancel_and_wait(task) for task in writing), return_exceptions=True
        )
        if any(isinstance(error, Fenced) for error in ended):
            self._metrics.fenced_batches.inc()
        # Stopping is routine; a writer that stops being one while running is worth a look.
        (log.info if why == STOPPING else log.warning)("this store replica stands by: %s", why)

    def _ensure_following(self) -> None:
        following = self._following
        if following is not None and following.done() and not following.cancelled():
            log.warning("following the writer ended: %r", following.exception())
        if not self._writing and (following is None or following.done()):
            self._following = asyncio.create_task(self._follower().run(), name="follow-writer")

    async def _stop_following(self) -> None:
        following, self._following = self._following, None
        if following is not None:
            await cancel_and_wait(following)

    async def stop(self) -> None:
        """Stops writing (then hands the lease back) or following."""
        if self._writing:
            await self._stand_by(STOPPING)
        await self._stop_following()
        await self._lease.release()


def _failed(task: asyncio.Task[None]) -> bool:
    """Whether a writer's task ended other than by returning."""
    return task.done() and (task.cancelled() or task.exception() is not None)
