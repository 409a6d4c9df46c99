"""A standby's watches: fed from its own subscription to EVENTS and the database.

A standby applies nothing, so its WatchHub hears of no change. It follows EVENTS itself,
with an ordered consumer from the first sequence after the applied one, and learns the
task each event is about; once the writer's applied sequence (read from the database)
reaches the event, it tells that task's watchers to read what changed from the database
(WatchHub.refresh). A watch reads versions from the database's history, so whatever the
writer committed reaches it once, in order, with no gap, on any replica. WatchTasks
feeds get each changed task as the database has it then, and end (to list again) when
the standby may have missed some.

The same applied sequence advances the hub's barrier, so the reads that wait for the
events published so far (read your writes, CancelTask, RetryTask) work on a standby too.
"""

from __future__ import annotations

import asyncio
import collections
import logging

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from conveyor import messages, subjects
from store.repository import TaskRepository
from store.watch import WatchHub

log = logging.getLogger(__name__)

POLL = 0.02
"""Seconds between two reads of the applied sequence while events wait for the writer."""
IDLE = 1.0
"""Seconds between two reads of it while no event waits (the barrier stays fresh)."""
MAX_PENDING = 100_000
"""Events (each of a batch counts) kept waiting for the writer, each with its task; past
this (a standby following a writer far behind) the rest are not kept, and every watcher
is refreshed once the writer has applied them."""
BEHIND_LOOKS = 2
"""Idle reads in a row finding the database past every event heard before all watchers
are refreshed (the subscription lost events: a stream made again, say)."""


class Follower:
    """Refreshes the watchers of the tasks the writer changed; ``run()`` until cancelled."""

    def __init__(self, js: JetStreamContext, repository: TaskRepository, hub: WatchHub) -> None:
        self._js = js
        self._repository = repository
        self._hub = hub
        self._pending: collections.deque[tuple[int, str]] = collections.deque()
        self._heard = 0
        self._refresh_all_at = 0  # a sequence past the events kept (MAX_PENDING)
        self._wake = asyncio.Event()

    async def run(self) -> None:
        applied = await self._read_applied()
        self._heard = applied
        await self._hub.publish([], applied)
        self._hub.refresh()  # what changed before the subscription starts
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=applied + 1
        )
        subscription = None
        while subscription is None:
            try:
                subscription = await self._js.subscribe(
                    f"{subjects.EVENTS_PREFIX}.>",
                    stream=subjects.STREAM_EVENTS,
                    ordered_consumer=True,
                    config=config,
                    cb=self._heard_event,
                )
            except Exception as exc:  # NATS away
                log.warning("following EVENTS failed (retrying): %r", exc)
                await asyncio.sleep(IDLE)
        try:
            await self._follow()
        finally:
            try:
                await subscription.unsubscribe()
            except Exception as exc:
                log.warning("ending the EVENTS subscription failed: %r", exc)

    async def _heard_event(self, msg: Msg) -> None:
        sequence = msg.metadata.sequence.stream
        try:
            # One event, or a batch naming several tasks (messages.event_batch).
            task_ids = [event.task_id for event in messages.events_of(msg.headers, msg.data)]
        except DecodeError:
            task_ids = [""]  # refused by the writer too (store.screen): no watcher to tell
        if len(self._pending) + len(task_ids) <= MAX_PENDING:
            self._pending.extend((sequence, task_id) for task_id in task_ids)
        else:
            self._refresh_all_at = sequence
        self._heard = max(self._heard, sequence)
        self._wake.set()

    async def _follow(self) -> None:
        behind = 0
        while True:
            if not self._pending:
                self._wake.clear()
                try:
                    async with asyncio.timeout(IDLE):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            applied = await self._read_applied()
            changed: set[str] = set()
            while self._pending and self._pending[0][0] <= applied:
                changed.add(self._pending.popleft()[1])
            if self._refresh_all_at and applied >= self._refresh_all_at:
                self._refresh_all_at = 0
                self._hub.refresh()
            else:
                self._hub.refresh(changed)
                if changed and self._hub.feeding:
                    await self._feed(changed)
            await self._hub.publish([], applied)
            if self._pending:
                await asyncio.sleep(POLL)
                continue
            behind = behind + 1 if applied > self._heard else 0
            if behind >= BEHIND_LOOKS:
                log.warning("the database applied events this standby did not hear of")
                self._hub.refresh()
                self._heard, behind = applied, 0

    async def _feed(self, task_ids: set[str]) -> None:
        """Offers the WatchTasks feeds each changed task as the database has it now (one
        change for several events applied together, unlike on the writer)."""
        changed = []
        for task_id in sorted(task_ids):
            task = await self._repository.get(task_id, omit_payloads=True) if task_id else None
            if task is not None:
                changed.append(task)
        self._hub.offer_feeds(changed)

    async def _read_applied(self) -> int:
        delay = POLL
        while True:
            try:
                return await self._repository.applied_sequence()
            except Exception as exc:  # the database away: watches wait, as on the writer
                log.warning("reading the applied sequence failed: %r", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, IDLE)
