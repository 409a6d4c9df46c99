"""In-process fan-out of task changes to WatchTask and WatchTasks streams, plus the
applied-sequence barrier that gives readers their writes."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

from conveyor.api.tasks.v1 import tasks_pb2

WATCH_QUEUE_SIZE = 256


class Subscription:
    """One watcher's queue of changes. When it overflows, ``lagged`` is set and the
    watcher re-reads what it missed from the database instead of losing it.

    ``last`` is the last version the watcher took. While it waits for a change with
    nothing left to read (``parked``), a ``listener`` (store.mux) may take the changes
    in its place with ``take``, in the same order and under the same rules, without
    waking the watcher's task for each: one task switch fewer per update."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.queue: collections.deque[tasks_pb2.Task] = collections.deque()
        self.lagged = asyncio.Event()
        self.wakeup = asyncio.Event()
        self.deleted = False
        self.last = 0
        self.parked = False
        self.finished = False
        """Its terminal version was taken: nothing more comes."""
        self.listener: Callable[[Subscription], None] | None = None

    def offer(self, task: tasks_pb2.Task) -> None:
        if len(self.queue) >= WATCH_QUEUE_SIZE:
            self.lagged.set()
            self.wakeup.set()
            return
        self.queue.append(task)
        if self.listener is not None and self.takeable:
            self.listener(self)
        else:
            self.wakeup.set()

    @property
    def takeable(self) -> bool:
        """Whether ``take`` may be called: the watcher waits with nothing to read and is
        not about to wake (to read the history, or to end)."""
        return self.parked and not self.wakeup.is_set() and not self.lagged.is_set()

    def take(self) -> tasks_pb2.Task | None:
        """The next version after ``last`` from the queue (older ones are skipped), None
        when the queue holds none. A version past the next one means changes were missed:
        ``lagged`` is set and None returned, so the history fills the gap."""
        while self.queue:
            task = self.queue.popleft()
            if task.version <= self.last:
                continue
            if task.version > self.last + 1:
                self.lagged.set()
                self.wakeup.set()
                return None
            self.last = task.version
            return task
        return None


@dataclass(frozen=True)
class TaskFilter:
    """Which changes a feed takes: ListTasks' filters, and the namespace (None: every one)."""

    namespace: str | None
    states: Collection[int] = ()
    type: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    def matches(self, task: tasks_pb2.Task) -> bool:
        return (
            (self.namespace is None or task.namespace == self.namespace)
            and (not self.states or task.state in self.states)
            and (not self.type or task.type == self.type)
            and all(task.labels.get(key) == value for key, value in self.labels.items())
        )


class Feed:
    """One WatchTasks stream's queue of the changes that match its filter, results left
    out. Nothing is re-read from the database for it: when the queue overflows,
    ``lagged`` is set and the stream ends, its reader to list and watch again."""

    def __init__(self, wanted: TaskFilter) -> None:
        self.filter = wanted
        self.queue: asyncio.Queue[tasks_pb2.Task] = asyncio.Queue(WATCH_QUEUE_SIZE)
        self.lagged = False

    def offer(self, task: tasks_pb2.Task) -> None:
        try:
            self.queue.put_nowait(task)
        except asyncio.QueueFull:
            self.lagged = True  # the queue is full, so its reader is not waiting on it

    def end(self) -> None:
        """Ends the stream as after an overflow: changes may have been missed."""
        self.lagged = True
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(tasks_pb2.Task())  # wakes a waiting reader, who sees lagged


def listed(task: tasks_pb2.Task) -> tasks_pb2.Task:
    """The task as ListTasks has it: without its result (a copy when it had one)."""
    if not task.HasField("result"):
        return task
    slim = tasks_pb2.Task()
    slim.CopyFrom(task)
    slim.ClearField("result")
    return slim


class WatchHub:
    """Task changes by task id, to every subscription of that id."""

    def __init__(self) -> None:
        self._subscriptions: dict[str, set[Subscription]] = defaultdict(set)
        self._feeds: set[Feed] = set()
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

    def feed(self, wanted: TaskFilter) -> Feed:
        """A feed of every later change that matches ``wanted``; ``close`` it when done."""
        feed = Feed(wanted)
        self._feeds.add(feed)
        return feed

    def close(self, feed: Feed) -> None:
        self._feeds.discard(feed)

    @property
    def watchers(self) -> int:
        return sum(len(s) for s in self._subscriptions.values()) + len(self._feeds)

    async def publish(self, changes: list[tasks_pb2.Task], applied_sequence: int) -> None:
        """Delivers committed changes and advances the applied sequence."""
        for task in changes:
            for subscription in self._subscriptions.get(task.id, ()):
                subscription.offer(task)
        self.offer_feeds(changes)
        async with self._applied:
            self.applied_sequence = max(self.applied_sequence, applied_sequence)
            self._applied.notify_all()

    @property
    def feeding(self) -> bool:
        """Whether any WatchTasks stream is open."""
        return bool(self._feeds)

    def offer_feeds(self, changes: Iterable[tasks_pb2.Task]) -> None:
        """Offers changes to every feed whose filter they match, matched in memory; the
        copy without the result is made once per change, for every feed it goes to."""
        if not self._feeds:
            return
        for task in changes:
            slim: tasks_pb2.Task | None = None
            for feed in self._feeds:
                if feed.filter.matches(task):
                    slim = slim or listed(task)
                    feed.offer(slim)

    def refresh(self, task_ids: Iterable[str] | None = None) -> None:
        """Makes the watchers of ``task_ids`` (None: of every task) read what changed from
        the database, as after an overflow: for changes this replica did not apply itself
        (store.follow), or may have missed while it changed roles. Refreshing every task
        also ends every feed, which has no history to re-read."""
        if task_ids is None:
            for feed in self._feeds:
                feed.end()
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
