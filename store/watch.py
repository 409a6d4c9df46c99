"""In-process fan-out of task changes to WatchTask streams, plus the applied-sequence
barrier that gives readers their writes."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable

from conveyor.api.tasks.v1 import tasks_pb2

WATCH_QUEUE_SIZE = 256


class Subscription:
    """One watcher's queue of changes. When it overflows, ``lagged`` is set and the
    watcher re-reads what it missed from the database instead of losing it."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.queue: asyncio.Queue[tasks_pb2.Task] = asyncio.Queue(WATCH_QUEUE_SIZE)
        self.lagged = asyncio.Event()
        self.wakeup = asyncio.Event()
        self.deleted = False

    def offer(self, task: tasks_pb2.Task) -> None:
        try:
            self.queue.put_nowait(task)
        except asyncio.QueueFull:
            self.lagged.set()
        self.wakeup.set()


class WatchHub:
    """Task changes by task id, to every subscription of that id."""

    def __init__(self) -> None:
        self._subscriptions: dict[str, set[Subscription]] = defaultdict(set)
        self.applied_sequence = 0
        self._applied = asyncio.Condition()

    def subscribe(self, task_id: str) -> Subscription:
        subscription = Subscription(task_id)
        self._subscriptions[task_id].add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscriptions = self._subscriptions.get(subscription.task_id)
        if subscriptions is not None:
            subscriptions.discard(subscription)
            if not subscriptions:
                del self._subscriptions[subscription.task_id]

    @property
    def watchers(self) -> int:
        return sum(len(s) for s in self._subscriptions.values())

    async def publish(self, changes: list[tasks_pb2.Task], applied_sequence: int) -> None:
        """Delivers committed changes and advances the applied sequence."""
        for task in changes:
            for subscription in self._subscriptions.get(task.id, ()):
                subscription.offer(task)
        async with self._applied:
            self.applied_sequence = max(self.applied_sequence, applied_sequence)
            self._applied.notify_all()

    def refresh(self, task_ids: Iterable[str] | None = None) -> None:
        """Makes the watchers of ``task_ids`` (None: of every task) read what changed from
        the database, as after an overflow: for changes this replica did not apply itself
        (store.follow), or may have missed while it changed roles."""
        if task_ids is None:
            chosen: Iterable[set[Subscription]] = list(self._subscriptions.values())
        else:
            chosen = [s for i in task_ids if (s := self._subscriptions.get(i))]
        for subscriptions in chosen:
            for subscription in subscriptions:
                subscription.lagged.set()
                subscription.wakeup.set()

    def deleted(self, task_ids: list[str]) -> None:
        """Tells the watchers of deleted tasks, which end instead of waiting for a change."""
        for task_id in task_ids:
            for subscription in self._subscriptions.get(task_id, ()):
                subscription.deleted = True
                subscription.lagged.set()
                subscription.wakeup.set()

    async def wait_applied(self, sequence: int, timeout: float) -> bool:
        """Waits until every event up to ``sequence`` is applied; False on timeout."""
        async with self._applied:
            try:
                async with asyncio.timeout(timeout):
                    await self._applied.wait_for(lambda: self.applied_sequence >= sequence)
            except TimeoutError:
                return False
        return True
