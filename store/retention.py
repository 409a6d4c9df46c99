"""Deleting finished tasks: one by request (DeleteTask), many by request (PurgeTasks) and
by age (retention), each with its history, labels, idempotency key and stored payloads.

Deletes run in small transactions of their own, never in the applier's batch: on SQLite
each holds the database's write lock for one batch of at most ``batch_size`` tasks, and
a pause between batches lets the applier take it (store.db).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from conveyor.auth.principal import DEFAULT_NAMESPACE
from conveyor.intake.submit import idempotency_bucket_key
from conveyor.metrics import StoreMetrics
from conveyor.payloads import PayloadStore
from conveyor.tasks import TERMINAL_STATES
from store.db import write_transaction
from store.models import CURSOR_ID, parked_events, store_cursor, task_history, task_labels, tasks
from store.watch import WatchHub

log = logging.getLogger(__name__)

FINISHED = tuple(sorted(TERMINAL_STATES))
PURGE_BATCH = 200
"""Tasks deleted per transaction: a few milliseconds of SQLite's write lock."""
PURGE_PAUSE = 0.05
"""Seconds between two batches of a purge, so the applier is never kept waiting long."""
RETENTION_EVERY = 60.0
"""Seconds between two retention rounds."""
KV_TIMEOUT = 5.0

PayloadDeleter = Callable[[Mapping[str, int]], Awaitable[None]]
"""Deletes the stored payloads of deleted tasks, given each task's id and attempts."""


async def keep_stored_payloads(attempts: Mapping[str, int]) -> None:
    """A :data:`PayloadDeleter` for a store without an object store (unit tests)."""
    return None


def payload_deleter(payloads: PayloadStore) -> PayloadDeleter:
    """Deletes from ``payloads`` the input and every attempt's result of deleted tasks; a
    failure is logged, since the rows are gone already and an orphan object harms nobody."""

    async def delete_payloads(attempts: Mapping[str, int]) -> None:
        for task_id, attempt in attempts.items():
            try:
                await payloads.delete_task(task_id, attempt)
            except Exception:
                log.warning("could not delete the stored payloads of task %s", task_id)

    return delete_payloads


@dataclass(frozen=True)
class Candidate:
    """A task to delete: its id and idempotency key ("" when none)."""

    task_id: str
    idempotency_key: str = ""
    namespace: str = DEFAULT_NAMESPACE


@dataclass(frozen=True)
class RetentionPolicy:
    """How long finished tasks are kept, in seconds; 0 keeps them forever."""

    default: float
    by_type: Mapping[str, float]


class Purger:
    """Deletes finished tasks and what refers to them; tells their watchers."""

    def __init__(
        self,
        engine: AsyncEngine,
        hub: WatchHub,
        idempotency: KeyValue | None,
        metrics: StoreMetrics | None = None,
        *,
        batch_size: int = PURGE_BATCH,
        pause: float = PURGE_PAUSE,
        delete_payloads: PayloadDeleter = keep_stored_payloads,
    ) -> None:
        self._engine = engine
        self._hub = hub
        self._idempotency = idempotency
        self._metrics = metrics
        self._batch_size = batch_size
        self._pause = pause
        self._delete_payloads = delete_payloads

    async def remove(self, candidates: Sequence[Candidate], reason: str) -> list[str]:
        """Deletes those of ``candidates`` that are still finished; returns their ids.

        Idempotency keys go first: a key left pointing at a deleted task would make the
        gateway publish that task again under its old id on a repeated submit."""
        if not candidates:
            return []
        await self._release_keys([c for c in candidates if c.idempotency_key])
        removed = await _delete_rows(self._engine, [c.task_id for c in candidates])
        if not removed.task_ids:
            return []
        self._hub.deleted(removed.task_ids)
        if self._metrics is not None:
            self._metrics.purged_tasks.labels(reason).inc(len(removed.task_ids))
            self._metrics.purged_rows.labels("tasks").inc(len(removed.task_ids))
            self._metrics.purged_rows.labels("task_history").inc(removed.history)
            self._metrics.purged_rows.labels("task_labels").inc(removed.labels)
        await self._delete_payloads(removed.attempts)
        return removed.task_ids

    async def purge(
        self,
        reason: str,
        finished_before: dt.datetime | None,
        states: Collection[int] = FINISHED,
        task_type: str = "",
        other_than: Collection[str] = (),
        namespace: str | None = None,
    ) -> int:
        """Deletes every task in ``states`` (finished ones) that ended before
        ``finished_before`` (None: any time), of ``task_type`` if given and of none of
        ``other_than``, in ``namespace`` if given, a batch per transaction; returns how
        many."""
        total = 0
        while True:
            batch = await _candidates(
                self._engine,
                sorted(set(states) & set(FINISHED)),
                task_type,
                other_than,
                finished_before,
                self._batch_size,
                namespace,
            )
            total += len(await self.remove(batch, reason))
            if len(batch) < self._batch_size:
                return total
            await asyncio.sleep(self._pause)

    async def purge_expired(self, policy: RetentionPolicy, now: dt.datetime) -> int:
        """One retention round: deletes tasks finished longer ago than their type keeps."""
        total = 0
        for task_type, keep in sorted(policy.by_type.items()):
            if keep > 0:
                before = now - dt.timedelta(seconds=keep)
                total += await self.purge("retention", before, task_type=task_type)
        if policy.default > 0:
            before = now - dt.timedelta(seconds=policy.default)
            total += await self.purge("retention", before, other_than=tuple(policy.by_type))
        if total:
            log.info("retention deleted %d finished tasks", total)
        return total

    async def run_retention(self, policy: RetentionPolicy, every: float = RETENTION_EVERY) -> None:
        """Runs a retention round every ``every`` seconds until cancelled."""
        if policy.default <= 0 and not any(keep > 0 for keep in policy.by_type.values()):
            return
        while True:
            try:
                await self.purge_expired(policy, dt.datetime.now(dt.UTC))
            except Exception as exc:
                log.warning("retention round failed (next in %.0fs): %s", every, exc)
            await asyncio.sleep(every)

    async def _release_keys(self, candidates: Sequence[Candidate]) -> None:
        """Deletes the idempotency keys that still name these tasks (a key may have
        expired and been claimed by a newer task since)."""
        if self._idempotency is None or not candidates:
            return
        async with asyncio.timeout(KV_TIMEOUT):
            await asyncio.gather(*(self._release_key(c) for c in candidates))

    async def _release_key(self, candidate: Candidate) -> None:
        assert self._idempotency is not None
        key = idempotency_bucket_key(candidate.idempotency_key, candidate.namespace)
        try:
            entry = await self._idempotency.get(key)
        except KeyNotFoundError:  # expired or deleted (KeyDeletedError is a subclass)
            return
        if entry.value == candidate.task_id.encode():
            await self._idempotency.delete(key, last=entry.revision)


@dataclass(frozen=True)
class _Removed:
    task_ids: list[str]
    history: int
    labels: int
    attempts: dict[str, int]


async def _delete_rows(engine: AsyncEngine, ids: Sequence[str]) -> _Removed:
    """Deletes the finished tasks among ``ids`` and their rows, in one transaction."""
    async with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            # The applier locks this row before loading its tasks, so no batch writes to
            # a task deleted under it (SQLite's write lock does the same there).
            cursor = select(store_cursor.c.id).where(store_cursor.c.id == CURSOR_ID)
            await conn.execute(cursor.with_for_update())
        finished = select(tasks.c.id, tasks.c.attempt).where(
            tasks.c.id.in_(ids), tasks.c.state.in_(FINISHED)
        )
        attempts = {row[0]: row[1] for row in await conn.execute(finished)}
        found = list(attempts)
        if not found:
            return _Removed([], 0, 0, {})
        history = await conn.execute(delete(task_history).where(task_history.c.task_id.in_(found)))
        labels = await conn.execute(delete(task_labels).where(task_labels.c.task_id.in_(found)))
        await conn.execute(delete(parked_events).where(parked_events.c.task_id.in_(found)))
        await conn.execute(delete(tasks).where(tasks.c.id.in_(found)))
    return _Removed(found, int(history.rowcount or 0), int(labels.rowcount or 0), attempts)


async def _candidates(
    engine: AsyncEngine,
    states: Sequence[int],
    task_type: str,
    other_than: Collection[str],
    finished_before: dt.datetime | None,
    limit: int,
    namespace: str | None = None,
) -> list[Candidate]:
    if not states:
        return []
    query = select(tasks.c.id, tasks.c.idempotency_key, tasks.c.namespace).where(
        tasks.c.state.in_(states)
    )
    if namespace is not None:
        query = query.where(tasks.c.namespace == namespace)
    if task_type:
        query = query.where(tasks.c.type == task_type)
    if other_than:
        query = query.where(tasks.c.type.not_in(sorted(other_than)))
    if finished_before is not None:
        # A task ends after it is created: the create_time bound lets the index serve.
        ended = func.coalesce(tasks.c.end_time, tasks.c.update_time)
        query = query.where(tasks.c.create_time < finished_before, ended < finished_before)
    async with engine.connect() as conn:
        rows = (await conn.execute(query.limit(limit))).all()
    return [Candidate(row[0], row[1] or "", row[2]) for row in rows]
