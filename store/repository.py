"""Task state in SQL: applies event batches exactly once and answers reads.

Writes come only from :meth:`TaskRepository.apply`, one transaction per batch of stream
events, with bulk statements: per-row round trips would cap the store at a few hundred
events per second (see DESIGN.md, section 6). The batch itself is store.batch, its SQL
store.bulk; reads go through store.reads and become Task messages in store.rows.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from sqlalchemy import bindparam, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.auth.principal import DEFAULT_NAMESPACE
from conveyor.tasks import is_terminal
from store import convert, parking
from store.batch import Batch, apply_one, write
from store.bulk import load
from store.db import InlineSqlite, inline_writes, write_transaction
from store.listing import list_query, list_values
from store.models import CURSOR_ID, parked_events, store_cursor, task_history, tasks
from store.pagination import Cursor, decode_token, encode_token, page_size_of
from store.reads import Reads
from store.rows import (
    LISTED_NAMES,
    SNAPSHOT_COLUMNS,
    SNAPSHOT_NAMES,
    snapshot_from_row,
    sqlite_time,
    task_of,
)
from store.screen import Refusals
from store.transitions import State

log = logging.getLogger(__name__)

_write = write  # looked up at each batch, so a test can make one fail after its writes

_GET = select(*SNAPSHOT_COLUMNS).where(tasks.c.id == bindparam("task_id"))
_GET_FULL = select(*SNAPSHOT_COLUMNS, tasks.c.input).where(tasks.c.id == bindparam("task_id"))
_HISTORY = (
    select(task_history.c.snapshot)
    .where(
        task_history.c.task_id == bindparam("task_id"),
        task_history.c.version > bindparam("after_version"),
    )
    .order_by(task_history.c.version)
)

# One range of the (namespace, state, create_time, id) index per unfinished state.
_UNFINISHED = select(func.count()).where(
    # A value here: the IN list of literals is rendered when the statement is compiled.
    tasks.c.namespace == bindparam("namespace", DEFAULT_NAMESPACE),
    tasks.c.state.in_([int(state) for state in State if not is_terminal(state)]),
)


class Fenced(Exception):
    """A newer writer claimed the database: this replica's batch was not committed."""


class TaskRepository:
    """Reads and writes tasks in the store's database.

    >>> repo = TaskRepository(engine)  # doctest: +SKIP
    >>> changed = await repo.apply([(sequence, event)])  # doctest: +SKIP
    """

    def __init__(self, engine: AsyncEngine, refuse: Refusals | None = None) -> None:
        self._refuse = refuse or Refusals()
        self._engine = engine
        self._reads = Reads(engine)
        self._pruned: dt.datetime | None = None
        self._inline = inline_writes(engine)
        self.fence: int | None = None
        """The writer epoch this replica applies under (store.lease); None: unchecked."""

    @property
    def engine(self) -> AsyncEngine:
        """The engine, for read-only analyses kept in their own modules (store.stats)."""
        return self._engine

    async def apply(
        self,
        events: Sequence[tuple[int, events_pb2.TaskEvent]],
        last_time_us: int | None = None,
    ) -> builtins.list[tasks_pb2.Task]:
        """Applies stream events in one transaction and returns every recorded change in order.

        ``events`` are (stream sequence, event) pairs, several at one sequence for a message
        holding a batch (in their order in it); ``last_time_us`` is the stream's time of
        the highest sequence, kept with the applied sequence (see store.history). Sequences
        at or below the stored applied sequence were applied already and are skipped, so
        redelivering a batch changes nothing: the task state is exactly-once although
        delivery is not.
        """
        if not events:
            return []
        async with self._write_transaction() as (conn, sqlite):
            stored = await _applied_sequence(conn, lock=True, sqlite=sqlite, fence=self.fence)
            # Stable: the events of one message (a batch) share its sequence and keep their
            # order. Each is compared with the stored sequence only, so all of a message's
            # events are applied in one transaction, or none when it was applied before.
            fresh = [pair for pair in sorted(events, key=_sequence_of) if pair[0] > stored]
            if not fresh:
                return []
            applied = fresh[-1][0]
            loaded = await load(conn, sqlite, {event.task_id for _, event in fresh})
            batch = Batch(loaded, convert.TaskBuilder())
            submits = parking.submitted_ids(fresh)
            if submits:
                batch.waiting = await parking.load(conn, sqlite, submits)
            previous, position = 0, 0
            for sequence, event in fresh:
                # Its place among its message's admitted events: with the sequence, the
                # key of a parked one (a sequence is applied in one transaction, once).
                position = position + 1 if sequence == previous else 0
                previous = sequence
                apply_one(batch, sequence, event, position)
            await _write(conn, sqlite, batch, applied, last_time_us)
        for sequence, task_id, problem in batch.refused:
            self._refuse(sequence, task_id, problem)
        await self._prune_parked()
        return batch.changes

    @contextlib.asynccontextmanager
    async def _write_transaction(
        self,
    ) -> AsyncIterator[tuple[AsyncConnection, InlineSqlite | None]]:
        """The batch's transaction: on SQLite its statements run inline and ``conn`` runs
        none (store.db.InlineWrites); elsewhere they go through ``conn``."""
        if self._inline is not None:
            async with self._inline.transaction(self._engine) as (conn, sqlite):
                yield conn, sqlite
        else:
            async with write_transaction(self._engine) as conn:
                yield conn, None

    async def _prune_parked(self) -> None:
        """Drops parked events whose task never came, every PRUNE_EVERY, after a batch (in
        a transaction of its own: they are a week old, no batch applies them)."""
        now = dt.datetime.now(dt.UTC)
        if self._pruned is None or now - self._pruned > parking.PRUNE_EVERY:
            self._pruned = now
            # The batch is committed: a failure here must not make it look failed (a retry
            # would find it applied, and its changes would never reach watchers).
            try:
                async with write_transaction(self._engine) as conn:
                    await parking.prune(conn, now)
            except Exception as exc:
                log.warning(
                    "dropping week-old parked events failed (next try in %s): %s",
                    parking.PRUNE_EVERY,
                    exc,
                )

    async def applied_sequence(self) -> int:
        """The stream sequence of the last event applied (0 before the first)."""
        async with self._engine.connect() as conn:
            return await _applied_sequence(conn, lock=False)

    async def cursor(self) -> tuple[int, int | None]:
        """The last event applied: its stream sequence (0 before the first) and the
        stream's time of it in microseconds (None when not known)."""
        async with self._engine.connect() as conn:
            return _cursor_of((await conn.execute(_CURSOR_ROW)).first())

    async def rebase(self, seen: tuple[int, int | None], sequence: int) -> int | None:
        """Moves the cursor to ``sequence`` of a new stream history, if it is still at
        ``seen`` (else another replica moved it or applied more: None). Events parked for
        tasks of the old history are dropped (their keys are its sequences); returns how
        many."""
        async with write_transaction(self._engine) as conn:
            # SQLite's write transaction already holds the lock; PostgreSQL locks the row.
            locked = _CURSOR_ROW if conn.dialect.name == "sqlite" else _CURSOR_ROW.with_for_update()
            row = (await conn.execute(locked)).first()
            if self.fence is not None:
                _check_fence(
                    int((await conn.execute(_EPOCH)).scalar_one_or_none() or 0), self.fence
                )
            if _cursor_of(row) != seen:
                return None
            await conn.execute(
                update(store_cursor)
                .where(store_cursor.c.id == CURSOR_ID)
                .values(applied_sequence=sequence, applied_time_us=None)
            )
            dropped = await conn.execute(delete(parked_events))
        return int(dropped.rowcount or 0)

    async def writer_epoch(self) -> int:
        """The fencing epoch of the last writer that claimed the database (0: none)."""
        async with self._engine.connect() as conn:
            return int((await conn.execute(_EPOCH)).scalar_one_or_none() or 0)

    async def claim_writer(self, epoch: int, patience: float | None = None) -> bool:
        """Makes ``epoch`` the only one whose batches commit, unless a newer one claimed
        the database already; whether it did (again, for a writer whose start failed:
        only the lease's holder has its epoch). It waits for a batch in flight (the cursor
        row's lock), so no batch of an older writer commits after it.

        On PostgreSQL, with ``patience``, a session still in the way after that many
        seconds is ended: only a writer stopped inside its transaction (paused, frozen,
        cut off) holds the cursor row that long, and its batch must not commit anyway."""
        async with write_transaction(self._engine) as conn:
            ender = None
            if conn.dialect.name == "postgresql" and patience is not None:
                pid = int((await conn.execute(_BACKEND_PID)).scalar_one())
                ender = asyncio.create_task(self._end_blockers(pid, patience))
            try:
                claimed = await conn.execute(
                    update(store_cursor)
                    .where(store_cursor.c.id == CURSOR_ID, store_cursor.c.writer_epoch <= epoch)
                    .values(writer_epoch=epoch)
                )
            finally:
                if ender is not None:
                    ender.cancel()
                    await asyncio.gather(ender, return_exceptions=True)
        self.fence = epoch  # not claimed: a newer writer's, so nothing commits under it
        return bool(claimed.rowcount)

    async def _end_blockers(self, pid: int, patience: float) -> None:
        """Ends, every ``patience`` seconds, the sessions that block session ``pid``."""
        while True:
            await asyncio.sleep(patience)
            async with self._engine.connect() as conn:
                ended = list((await conn.execute(_END_BLOCKERS, {"pid": pid})).scalars())
                await conn.commit()
            if ended:
                log.warning(
                    "ended database sessions %s, which held the store's cursor for over "
                    "%.1fs (a writer stopped inside its transaction)",
                    ended,
                    patience,
                )

    async def get(
        self, task_id: str, omit_payloads: bool = False, with_input: bool = False
    ) -> tasks_pb2.Task | None:
        """The task, or None if unknown; ``omit_payloads`` leaves out image bytes,
        ``with_input`` adds the task's input (GetTask's FULL view)."""
        rows, raw = await self._reads.rows(_GET_FULL if with_input else _GET, {"task_id": task_id})
        if not rows:
            return None
        row = tuple(rows[0])
        task = task_of(row[: len(SNAPSHOT_NAMES)], SNAPSHOT_NAMES, raw)
        if with_input:
            task.input.ParseFromString(row[-1])
        return convert.omit_payloads(task) if omit_payloads else task

    async def get_for_redrive(
        self, task_id: str
    ) -> tuple[tasks_pb2.Task, tasks_pb2.TaskInput, events_pb2.RetryPolicy, int] | None:
        """What re-queuing the task needs, or None if unknown.

        Returns the task, its input, its retry policy and the attempt budget of its last
        run (``max_attempts - attempt_offset``), which a re-drive grants again.
        """
        async with self._engine.connect() as conn:
            query = select(*SNAPSHOT_COLUMNS, tasks.c.input, tasks.c.retry_policy)
            row = (await conn.execute(query.where(tasks.c.id == task_id))).first()
        if row is None:
            return None
        snapshot = snapshot_from_row(row._mapping)
        return (
            convert.snapshot_to_task(snapshot),
            tasks_pb2.TaskInput.FromString(row.input),
            events_pb2.RetryPolicy.FromString(row.retry_policy),
            snapshot.max_attempts - snapshot.attempt_offset,
        )

    async def list(
        self,
        states: Iterable[int] = (),
        task_type: str = "",
        labels: dict[str, str] | None = None,
        page_size: int = 0,
        page_token: str = "",
        namespace: str | None = DEFAULT_NAMESPACE,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
    ) -> tuple[builtins.list[tasks_pb2.Task], str]:
        """One page of tasks, newest first, and the token of the next page ("" at the end).

        Filters combine with AND: the namespace (None: every one), any of ``states``, the
        type, all of ``labels``, and created at or after ``created_after`` and before
        ``created_before``. Listed tasks carry no result. Raises InvalidArgument
        for a malformed token.
        """
        cursor = decode_token(page_token)
        size = page_size_of(page_size)
        wanted = sorted(set(states))
        labels = labels or {}
        shape = (len(wanted), bool(task_type), len(labels), cursor is not None)
        query = list_query(
            *shape,
            namespaced=namespace is not None,
            since=created_after is not None,
            until=created_before is not None,
        )
        # one more than asked says whether there is a next page
        values = list_values(
            wanted, task_type, labels, cursor, size + 1, namespace, created_after, created_before
        )
        rows, raw = await self._reads.rows(query, values)
        page = [task_of(row, LISTED_NAMES, raw) for row in rows[:size]]
        token = ""
        if len(rows) > size:
            last = rows[size - 1]
            create_time = last[LISTED_NAMES.index("create_time")]
            if raw:
                create_time = sqlite_time(create_time)
            token = encode_token(Cursor(create_time, last[LISTED_NAMES.index("id")]))
        return page, token

    async def count_unfinished(self, namespace: str) -> int:
        """How many of the namespace's tasks are not in a terminal state."""
        rows, _ = await self._reads.rows(_UNFINISHED, {"namespace": namespace})
        return int(rows[0][0] or 0) if rows else 0

    async def history(self, task_id: str, after_version: int = 0) -> builtins.list[tasks_pb2.Task]:
        """The task as it was at each version after ``after_version``, oldest first."""
        values = {"task_id": task_id, "after_version": after_version}
        rows, _ = await self._reads.rows(_HISTORY, values)
        return [tasks_pb2.Task.FromString(row[0]) for row in rows]


def _sequence_of(pair: tuple[int, events_pb2.TaskEvent]) -> int:
    return pair[0]


async def _applied_sequence(
    conn: AsyncConnection,
    *,
    lock: bool,
    sqlite: InlineSqlite | None = None,
    fence: int | None = None,
) -> int:
    """The stored applied sequence; ``lock`` (with ``sqlite``, ``conn``'s
    sqlite3 connection on SQLite) in a write transaction that goes on to apply a batch,
    which raises :class:`Fenced` unless the stored writer epoch is ``fence`` (if given)."""
    fenced = fence is not None
    if lock and sqlite is not None:
        # SQLite has no FOR UPDATE; BEGIN IMMEDIATE already serialises writers.
        rows = sqlite.fetchall(_CURSOR_FENCE_SQL if fenced else _CURSOR_SQL, (CURSOR_ID,))
        row = next(iter(rows)) if rows else (0, 0)
    else:
        columns = [store_cursor.c.applied_sequence]
        if fenced:
            columns.append(store_cursor.c.writer_epoch)
        query = select(*columns).where(store_cursor.c.id == CURSOR_ID)
        if lock:
            # PostgreSQL: a second store replica waits here instead of applying the batch
            # too, and a new writer's claim (claim_writer) waits for this batch to end.
            query = query.with_for_update()
        row = (await conn.execute(query)).first() or (0, 0)
    if fence is not None:
        _check_fence(int(row[1] or 0), fence)
    return int(row[0] or 0)


def _check_fence(stored: int, fence: int) -> None:
    if stored != fence:
        raise Fenced(f"the writer lease of epoch {fence} was taken over (epoch {stored})")


_CURSOR_SQL = "SELECT applied_sequence FROM store_cursor WHERE id = ?"
_CURSOR_FENCE_SQL = "SELECT applied_sequence, writer_epoch FROM store_cursor WHERE id = ?"
_CURSOR_ROW = select(store_cursor.c.applied_sequence, store_cursor.c.applied_time_us).where(
    store_cursor.c.id == CURSOR_ID
)
_BACKEND_PID = text("SELECT pg_backend_pid()")
_END_BLOCKERS = text(
    "SELECT blocker FROM unnest(pg_blocking_pids(:pid)) AS blocker "
    "WHERE pg_terminate_backend(blocker)"
)
_EPOCH = select(store_cursor.c.writer_epoch).where(store_cursor.c.id == CURSOR_ID)


def _cursor_of(row: Any) -> tuple[int, int | None]:
    """(applied sequence, its stream time in µs or None) of a ``_CURSOR_ROW`` row."""
    if row is None:
        return 0, None
    return int(row[0] or 0), None if row[1] is None else int(row[1])
