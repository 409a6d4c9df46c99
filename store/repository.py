"""Task state in SQL: applies event batches exactly once and answers reads.

Writes come only from :meth:`TaskRepository.apply`, one transaction per batch of stream
events, with bulk statements: per-row round trips would cap the store at a few hundred
events per second (see DESIGN.md, section 6).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import datetime as dt
import functools
import json
import logging
import sqlite3
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Dialect,
    Integer,
    Select,
    bindparam,
    delete,
    exists,
    insert,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from store import convert, parking
from store.db import (
    SQLITE_BUSY_TIMEOUT_MS,
    InlineSqlite,
    inline_writes,
    write_transaction,
)
from store.models import (
    CURSOR_ID,
    UTCDateTime,
    parked_events,
    store_cursor,
    task_history,
    task_labels,
    tasks,
)
from store.pagination import Cursor, decode_token, encode_token, page_size_of
from store.transitions import Event, Kind, Snapshot, transition

log = logging.getLogger(__name__)

_TIME_COLUMNS = tuple(c.name for c in tasks.c if isinstance(c.type, UTCDateTime))
"""The ``tasks`` columns holding times, which the driver-level reads and writes convert."""

logger = logging.getLogger(__name__)

_ID_CHUNK = 1000  # ids per IN (...) list: well under every driver's parameter limit

# Columns a transition may change. The rest (type, labels, create_time ...) are fixed at
# submit, so updates leave them out and write less.
_MUTABLE = (
    "state",
    "attempt",
    "max_attempts",
    "attempt_offset",
    "version",
    "cancel_requested",
    "worker_id",
    "result",
    "error",
    "attempt_errors",
    "progress_current",
    "progress_total",
    "progress_message",
    "update_time",
    "start_time",
    "end_time",
    "next_attempt_time",
)
# Everything but the immutable input, which only submit and re-drive need.
_SNAPSHOT_COLUMNS = [c for c in tasks.c if c.name not in ("input", "retry_policy")]
# Listed tasks leave out results too, which can be megabytes of image.
_LISTED_COLUMNS = [c for c in _SNAPSHOT_COLUMNS if c.name != "result"]
_GET = select(*_SNAPSHOT_COLUMNS).where(tasks.c.id == bindparam("task_id"))
_HISTORY = (
    select(task_history.c.snapshot)
    .where(
        task_history.c.task_id == bindparam("task_id"),
        task_history.c.version > bindparam("after_version"),
    )
    .order_by(task_history.c.version)
)
_UPDATE_TASK = update(tasks).where(tasks.c.id == bindparam("b_id"))


@dataclass
class _Batch:
    """The in-memory outcome of one batch before it is written."""

    loaded: dict[str, Snapshot]
    builder: convert.TaskBuilder  # one per batch: kept longer, its entries made the GC work
    current: dict[str, Snapshot] = field(default_factory=dict)
    created: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)  # input, policy
    history: list[tuple[str, int, bytes]] = field(default_factory=list)
    changes: list[tasks_pb2.Task] = field(default_factory=list)
    waiting: parking.Parked = field(default_factory=dict)
    """Events parked before this batch for tasks it submits (see store.parking)."""
    parked: parking.Parked = field(default_factory=dict)
    """Events this batch parks, by task id; written unless the batch also submits it."""
    unparked: list[int] = field(default_factory=list)
    """Sequences of events parked before this batch that it applied."""


class TaskRepository:
    """Reads and writes tasks in the store's database.

    >>> repo = TaskRepository(engine)  # doctest: +SKIP
    >>> changed = await repo.apply([(sequence, event)])  # doctest: +SKIP
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._pruned: dt.datetime | None = None
        self._inline = inline_writes(engine)

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

        ``events`` are (stream sequence, event) pairs; ``last_time_us`` is the stream's time
        of the one with the highest sequence, kept with the applied sequence (see
        store.history). Sequences at or below the stored applied sequence were applied
        already and are skipped, so redelivering a batch changes nothing: the task state is
        exactly-once although delivery is not.
        """
        if not events:
            return []
        async with self._write_transaction() as (conn, sqlite):
            applied = await _applied_sequence(conn, lock=True, sqlite=sqlite)
            fresh: builtins.list[tuple[int, events_pb2.TaskEvent]] = []
            for sequence, event in sorted(events, key=lambda pair: pair[0]):
                if sequence > applied:
                    fresh.append((sequence, event))
                    applied = sequence
            if not fresh:
                return []
            loaded = await _load(conn, sqlite, {event.task_id for _, event in fresh})
            batch = _Batch(loaded, convert.TaskBuilder())
            submits = parking.submitted_ids(fresh)
            if submits:
                batch.waiting = await parking.load(conn, sqlite, submits)
            for sequence, event in fresh:
                _apply_one(batch, sequence, event)
            await _write(conn, sqlite, batch, applied, last_time_us)
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
            if _cursor_of((await conn.execute(locked)).first()) != seen:
                return None
            await conn.execute(
                update(store_cursor)
                .where(store_cursor.c.id == CURSOR_ID)
                .values(applied_sequence=sequence, applied_time_us=None)
            )
            dropped = await conn.execute(delete(parked_events))
        return int(dropped.rowcount or 0)

    async def get(self, task_id: str, omit_payloads: bool = False) -> tasks_pb2.Task | None:
        """The task, or None if unknown; ``omit_payloads`` leaves out result image bytes."""
        rows, raw = await _read_rows(self, _GET, {"task_id": task_id})
        if not rows:
            return None
        task = _task_of(rows[0], _SNAPSHOT_NAMES, raw)
        return convert.omit_payloads(task) if omit_payloads else task

    async def get_for_redrive(
        self, task_id: str
    ) -> tuple[tasks_pb2.Task, tasks_pb2.TaskInput, events_pb2.RetryPolicy, int] | None:
        """What re-queuing the task needs, or None if unknown.

        Returns the task, its input, its retry policy and the attempt budget of its last
        run (``max_attempts - attempt_offset``), which a re-drive grants again.
        """
        async with self._engine.connect() as conn:
            query = select(*_SNAPSHOT_COLUMNS, tasks.c.input, tasks.c.retry_policy)
            row = (await conn.execute(query.where(tasks.c.id == task_id))).first()
        if row is None:
            return None
        snapshot = convert.snapshot_from_row(row._mapping)
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
    ) -> tuple[builtins.list[tasks_pb2.Task], str]:
        """One page of tasks, newest first, and the token of the next page ("" at the end).

        Filters combine with AND: any of ``states``, the type, and all of ``labels``.
        Listed tasks carry no result. Raises InvalidArgument for a malformed token.
        """
        cursor = decode_token(page_token)
        size = page_size_of(page_size)
        wanted = sorted(set(states))
        labels = labels or {}
        query = _list_query(len(wanted), bool(task_type), len(labels), cursor is not None)
        # one more than asked says whether there is a next page
        values = _list_values(wanted, task_type, labels, cursor, size + 1)
        rows, raw = await _read_rows(self, query, values)
        page = [_task_of(row, _LISTED_NAMES, raw) for row in rows[:size]]
        token = ""
        if len(rows) > size:
            last = rows[size - 1]
            create_time = last[_LISTED_NAMES.index("create_time")]
            if raw:
                create_time = _sqlite_time(create_time)
            token = encode_token(Cursor(create_time, last[_LISTED_NAMES.index("id")]))
        return page, token

    async def history(self, task_id: str, after_version: int = 0) -> builtins.list[tasks_pb2.Task]:
        """The task as it was at each version after ``after_version``, oldest first."""
        values = {"task_id": task_id, "after_version": after_version}
        rows, _ = await _read_rows(self, _HISTORY, values)
        return [tasks_pb2.Task.FromString(row[0]) for row in rows]


async def _applied_sequence(
    conn: AsyncConnection, *, lock: bool, sqlite: InlineSqlite | None = None
) -> int:
    """The stored applied sequence; ``lock`` (with ``sqlite``, ``conn``'s
    sqlite3 connection on SQLite) in a write transaction that goes on to apply a batch."""
    if lock and sqlite is not None:
        # SQLite has no FOR UPDATE; BEGIN IMMEDIATE already serialises writers.
        rows = sqlite.fetchall(_CURSOR_SQL, (CURSOR_ID,))
        return int(next(iter(rows))[0] or 0) if rows else 0
    query = select(store_cursor.c.applied_sequence).where(store_cursor.c.id == CURSOR_ID)
    if lock:
        # PostgreSQL: a second store replica waits here instead of applying the batch too.
        query = query.with_for_update()
    value = (await conn.execute(query)).scalar_one_or_none()
    return int(value or 0)


_CURSOR_SQL = "SELECT applied_sequence FROM store_cursor WHERE id = ?"
_CURSOR_ROW = select(store_cursor.c.applied_sequence, store_cursor.c.applied_time_us).where(
    store_cursor.c.id == CURSOR_ID
)


def _cursor_of(row: Any) -> tuple[int, int | None]:
    """(applied sequence, its stream time in µs or None) of a ``_CURSOR_ROW`` row."""
    if row is None:
        return 0, None
    return int(row[0] or 0), None if row[1] is None else int(row[1])


async def _load(
    conn: AsyncConnection, sqlite: InlineSqlite | None, ids: set[str]
) -> dict[str, Snapshot]:
    ordered = sorted(ids)
    loaded: dict[str, Snapshot] = {}
    for start in range(0, len(ordered), _ID_CHUNK):
        chunk = ordered[start : start + _ID_CHUNK]
        if sqlite is not None:
            # Straight to sqlite3 (store.db.InlineSqlite); values come back as SQLite
            # keeps them and are converted here (see _from_sqlite).
            sql = f"{_LOAD_SQL}({', '.join('?' * len(chunk))})"
            for raw in sqlite.fetchall(sql, chunk):
                snapshot = convert.snapshot_from_row(_from_sqlite(raw))
                loaded[snapshot.id] = snapshot
            continue
        result = await conn.execute(select(*_SNAPSHOT_COLUMNS).where(tasks.c.id.in_(chunk)))
        for row in result:
            snapshot = convert.snapshot_from_row(row._mapping)
            loaded[snapshot.id] = snapshot
    return loaded


_LOAD_NAMES = tuple(c.name for c in _SNAPSHOT_COLUMNS)
_LOAD_SQL = f"SELECT {', '.join(_LOAD_NAMES)} FROM tasks WHERE id IN "


def _from_sqlite(raw: Sequence[Any]) -> dict[str, Any]:
    """A ``tasks`` row as sqlite3 returns it, with the values SQLAlchemy's column types
    would give: aware UTC times from the stored text, labels from JSON, booleans."""
    row = dict(zip(_LOAD_NAMES, raw, strict=True))
    for name in _TIME_COLUMNS:
        text = row[name]
        if text is not None:
            # The stored text is naive UTC: parsed with the offset appended, at a seventh of
            # the cost of parsing it and replace(tzinfo=UTC).
            row[name] = dt.datetime.fromisoformat(text + "+00:00")
    row["labels"] = json.loads(row["labels"]) if row["labels"] else {}
    row["cancel_requested"] = bool(row["cancel_requested"])
    return row


def _apply_one(batch: _Batch, sequence: int, message: events_pb2.TaskEvent) -> None:
    events = convert.events_from_proto(message)
    if not events:
        logger.warning("event %d for task %s has no kind; ignored", sequence, message.task_id)
        return
    first = events[0]
    task_id = first.created.id if first.created is not None else first.task_id
    known = task_id in batch.current or task_id in batch.loaded
    if not known and first.kind is not Kind.SUBMITTED:
        # Before its task's `submitted` (two streams, no order): kept until it comes.
        batch.parked.setdefault(task_id, []).append((sequence, message))
        logger.debug("%s event %d parked until task %s", first.kind.value, sequence, task_id)
        return
    for event in events:
        _apply_event(batch, sequence, message, event)
    if not known and task_id in batch.current:  # just created: its parked events follow
        _apply_parked(batch, task_id)


def _apply_parked(batch: _Batch, task_id: str) -> None:
    """Applies the events parked for a task just created, in stream order: those parked
    before this batch (deleted with it) and those this batch parked (never written)."""
    waiting = batch.waiting.pop(task_id, [])
    batch.unparked.extend(sequence for sequence, _ in waiting)
    # Both lists are in stream order, and every event parked before this batch precedes
    # those parked by it.
    for sequence, message in waiting + batch.parked.pop(task_id, []):
        _apply_one(batch, sequence, message)


def _apply_event(batch: _Batch, sequence: int, message: events_pb2.TaskEvent, event: Event) -> None:
    current = batch.current.get(event.task_id) or batch.loaded.get(event.task_id)
    changed = transition(current, event)
    if changed is None:
        logger.debug("%s event %d for task %s ignored", event.kind.value, sequence, event.task_id)
        return
    if current is None:
        submitted = message.submitted
        batch.created[changed.id] = (
            submitted.input.SerializeToString(),
            submitted.retry_policy.SerializeToString(),
        )
    batch.current[changed.id] = changed
    task = batch.builder.task(changed)
    batch.history.append((changed.id, changed.version, task.SerializeToString()))
    batch.changes.append(task)


async def _write(
    conn: AsyncConnection,
    sqlite: InlineSqlite | None,
    batch: _Batch,
    applied: int,
    applied_time_us: int | None,
) -> None:
    """Writes the batch with one driver-level ``executemany`` per statement.

    The values are converted here, once, to what the driver takes (times as SQLite text or
    aware datetimes, labels as JSON text), and handed over as tuples: SQLAlchemy's per-row
    parameter processing of Core ``executemany`` was the largest cost of a batch.
    """
    to_time = _sqlite_text if conn.dialect.name == "sqlite" else _aware
    inserts: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    label_rows: list[tuple[str, str, str]] = []
    created = batch.created
    for task_id, snapshot in batch.current.items():
        if task_id in created:
            task_input, policy = created[task_id]
            inserts.append(_insert_row(snapshot, task_input, policy, to_time))
            label_rows.extend((task_id, k, v) for k, v in snapshot.labels.items())
        else:
            updates.append(_update_row(snapshot, to_time))
    # Rows first: labels and history refer to them by foreign key.
    if inserts:
        await _executemany(conn, sqlite, "insert", inserts)
    if updates:
        await _executemany(conn, sqlite, "update", updates)
    if label_rows:
        await _executemany(conn, sqlite, "labels", label_rows)
    if batch.history:
        await _executemany(conn, sqlite, "history", batch.history)
    if batch.parked:
        park_time = to_time(dt.datetime.now(dt.UTC))
        parked = [
            (sequence, task_id, message.SerializeToString(), park_time)
            for task_id, messages in batch.parked.items()
            for sequence, message in messages
        ]
        await _executemany(conn, sqlite, "park", parked)
    if batch.unparked:
        await _executemany(conn, sqlite, "unpark", [(seq,) for seq in batch.unparked])
    await _executemany(conn, sqlite, "cursor", [(applied, applied_time_us, CURSOR_ID)])


_ToTime = Callable[[dt.datetime | None], Any]


def _insert_row(s: Snapshot, task_input: bytes, policy: bytes, to_time: _ToTime) -> tuple[Any, ...]:
    """The values of a new ``tasks`` row in ``_INSERT_KEYS`` order, as the driver takes
    them: convert.snapshot_to_row's values, without a dict per row."""
    return (
        s.id,
        s.type,
        int(s.state),
        s.priority,
        s.attempt,
        s.max_attempts,
        s.attempt_offset,
        s.version,
        s.cancel_requested,
        s.idempotency_key or None,
        s.schedule_id or None,
        s.worker_id,
        s.timeout_seconds,
        task_input,
        policy,
        s.result,
        s.error,
        convert.encode_errors(s.attempt_errors),
        s.progress.current,
        s.progress.total,
        s.progress.message,
        to_time(s.create_time),
        to_time(s.update_time),
        to_time(s.start_time),
        to_time(s.end_time),
        to_time(s.run_at),
        to_time(s.next_attempt_time),
        json.dumps(dict(s.labels)),
    )


def _update_row(s: Snapshot, to_time: _ToTime) -> tuple[Any, ...]:
    """The values of an update of the ``_MUTABLE`` columns, in ``_UPDATE_KEYS`` order."""
    return (
        int(s.state),
        s.attempt,
        s.max_attempts,
        s.attempt_offset,
        s.version,
        s.cancel_requested,
        s.worker_id,
        s.result,
        s.error,
        convert.encode_errors(s.attempt_errors),
        s.progress.current,
        s.progress.total,
        s.progress.message,
        to_time(s.update_time),
        to_time(s.start_time),
        to_time(s.end_time),
        to_time(s.next_attempt_time),
        s.id,
    )


_INSERT_KEYS = tuple(c.name for c in tasks.c)
_UPDATE_KEYS = (*_MUTABLE, "b_id")
# _insert_row and _update_row spell these orders out; a column added to the table must be
# added there too, which this check says at import rather than as wrong values written.
_ROW_ORDERS = (
    "id", "type", "state", "priority", "attempt", "max_attempts", "attempt_offset", "version",
    "cancel_requested", "idempotency_key", "schedule_id", "worker_id", "timeout_seconds",
    "input", "retry_policy", "result", "error", "attempt_errors", "progress_current",
    "progress_total", "progress_message", "create_time", "update_time", "start_time",
    "end_time", "run_at", "next_attempt_time", "labels",
), (
    "state", "attempt", "max_attempts", "attempt_offset", "version", "cancel_requested",
    "worker_id", "result", "error", "attempt_errors", "progress_current", "progress_total",
    "progress_message", "update_time", "start_time", "end_time", "next_attempt_time", "b_id",
)  # fmt: skip
if (_INSERT_KEYS, _UPDATE_KEYS) != _ROW_ORDERS:
    raise RuntimeError("store.repository: _insert_row/_update_row out of step with the table")
_WRITES: dict[str, tuple[Any, tuple[str, ...]]] = {
    "insert": (insert(tasks), _INSERT_KEYS),
    "update": (_UPDATE_TASK, _UPDATE_KEYS),
    "labels": (insert(task_labels), ("task_id", "key", "value")),
    "history": (insert(task_history), ("task_id", "version", "snapshot")),
    "park": (insert(parked_events), ("sequence", "task_id", "event", "park_time")),
    "unpark": (
        delete(parked_events).where(parked_events.c.sequence == bindparam("b_sequence")),
        ("b_sequence",),
    ),
    "cursor": (
        update(store_cursor)
        .where(store_cursor.c.id == bindparam("b_id"))
        .values(applied_sequence=bindparam("b_applied"), applied_time_us=bindparam("b_time")),
        ("b_applied", "b_time", "b_id"),
    ),
}
_WRITE_SQL: weakref.WeakKeyDictionary[Dialect, dict[str, str]] = weakref.WeakKeyDictionary()


async def _executemany(
    conn: AsyncConnection,
    sqlite: InlineSqlite | None,
    name: str,
    rows: Sequence[tuple[Any, ...]],
) -> None:
    """Runs one of the ``_WRITES`` statements for positional rows in the key order given
    there, through the driver's ``executemany`` (no per-row SQLAlchemy processing).

    On SQLite it goes straight to the sqlite3 connection (store.db.InlineSqlite), inside
    the transaction store.db.InlineWrites began on it: no hand-off to aiosqlite's thread
    at all, where SQLAlchemy's adapter made three (cursor, execute, close).
    """
    sql = _write_sql(conn.dialect, name)
    if sqlite is not None:
        sqlite.executemany(sql, rows)
    else:
        await conn.exec_driver_sql(sql, list(rows) if len(rows) > 1 else rows[0])


def _write_sql(dialect: Dialect, name: str) -> str:
    compiled = _WRITE_SQL.setdefault(dialect, {})
    sql = compiled.get(name)
    if sql is None:
        statement, keys = _WRITES[name]
        done = statement.compile(dialect=dialect, column_keys=[k for k in keys if k[:2] != "b_"])
        if tuple(done.positiontup or ()) != keys:  # the tuples are built in this order
            raise RuntimeError(f"{name}: parameters {done.positiontup} are not {keys}")
        sql = compiled[name] = done.string
    return sql


def _sqlite_text(value: dt.datetime | None) -> str | None:
    """A time as SQLAlchemy's SQLite DateTime stores it: naive UTC text, microseconds
    always written, so that stored times compare correctly as text."""
    if value is None:
        return None
    if value.tzinfo is not dt.UTC:
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store times must be timezone-aware")
        value = value.astimezone(dt.UTC)
    # "YYYY-MM-DD HH:MM:SS.ffffff+00:00" without the offset; a third cheaper than formatting
    # the fields one by one
    return value.isoformat(" ", "microseconds")[:26]


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: store times must be timezone-aware")
    return value


def _filters(states: int, typed: bool, labels: range) -> builtins.list[ColumnElement[bool]]:
    """Conditions on ``states`` bound states (any of), the type, and the labels numbered
    ``labels`` (all of), as named parameters: see _list_values."""
    conditions: list[ColumnElement[bool]] = []
    if states == 1:
        conditions.append(tasks.c.state == bindparam("state_0"))
    elif states:
        conditions.append(tasks.c.state.in_([bindparam(f"state_{i}") for i in range(states)]))
    if typed:
        conditions.append(tasks.c.type == bindparam("task_type"))
    for i in labels:
        conditions.append(
            exists().where(
                task_labels.c.task_id == tasks.c.id,
                task_labels.c.key == bindparam(f"label_key_{i}"),
                task_labels.c.value == bindparam(f"label_value_{i}"),
            )
        )
    return conditions


def _after(create_time: Any = tasks.c.create_time, task_id: Any = tasks.c.id) -> Any:
    """Rows after the cursor in (create_time desc, id desc) order: one row-value comparison,
    which both databases answer with a range of an index ending in (create_time, id)."""
    bound = tuple_(
        bindparam("after_time", type_=tasks.c.create_time.type),
        bindparam("after_id", type_=tasks.c.id.type),
    )
    return tuple_(create_time, task_id) < bound


_NEWEST_FIRST = (tasks.c.create_time.desc(), tasks.c.id.desc())


@functools.lru_cache(maxsize=512)
def _list_query(states: int, typed: bool, labels: int, after: bool) -> Select[Any]:
    """The page query of one shape (how many states and labels, a type, a cursor), with
    every value a named parameter (see _list_values), so each shape is compiled once.

    Each filter reads one index range in page order. By label: the first label's (key,
    value, create_time, task_id) index drives, in order; the rest are filters. Several
    states: one ordered range per state, merged (an IN over the (state, create_time, id)
    index would sort every matching row). Otherwise the state or type index, or
    (create_time, id) alone.
    """
    limit = bindparam("limit", type_=Integer)
    if labels:
        label = task_labels.alias("driving_label")
        conditions = [label.c.key == bindparam("label_key_0")]
        conditions.append(label.c.value == bindparam("label_value_0"))
        conditions += _filters(states, typed, range(1, labels))
        if after:
            conditions.append(_after(label.c.create_time, label.c.task_id))
        return (
            select(*_LISTED_COLUMNS)
            .select_from(label.join(tasks, tasks.c.id == label.c.task_id))
            .where(*conditions)
            .order_by(label.c.create_time.desc(), label.c.task_id.desc())
            .limit(limit)
        )
    cursor = [_after()] if after else []
    if states > 1:
        parts = [
            select(
                select(*_LISTED_COLUMNS)
                .where(tasks.c.state == bindparam(f"state_{i}"), *_filters(0, typed, range(0)))
                .where(*cursor)
                .order_by(*_NEWEST_FIRST)
                .limit(limit)
                .subquery()
            )
            for i in range(states)
        ]
        merged = union_all(*parts).subquery()
        return select(merged).order_by(merged.c.create_time.desc(), merged.c.id.desc()).limit(limit)
    return (
        select(*_LISTED_COLUMNS)
        .where(*_filters(states, typed, range(0)), *cursor)
        .order_by(*_NEWEST_FIRST)
        .limit(limit)
    )


def _list_values(
    states: builtins.list[int],
    task_type: str,
    labels: dict[str, str],
    cursor: Cursor | None,
    limit: int,
) -> dict[str, Any]:
    """The parameters of _list_query for these filters."""
    values: dict[str, Any] = {"limit": limit}
    for i, state in enumerate(states):
        values[f"state_{i}"] = state
    if task_type:
        values["task_type"] = task_type
    for i, (key, value) in enumerate(sorted(labels.items())):
        values[f"label_key_{i}"] = key
        values[f"label_value_{i}"] = value
    if cursor is not None:
        values["after_time"] = cursor.create_time
        values["after_id"] = cursor.task_id
    return values


# --- reads -----------------------------------------------------------------------------
# A read through SQLAlchemy's async engine on aiosqlite costs several thread hand-offs
# (checkout, cursor, execute, fetch, close, rollback) and per-value result processing:
# ~0.75 ms for a primary-key lookup that SQLite answers in ~0.01 ms. On SQLite the
# repository therefore runs each read as one statement on its own sqlite3 connections, one
# hand-off to a small thread pool per read, and builds Task messages straight from the row
# tuples. Each read is a single statement in autocommit mode, so it sees one committed
# state (WAL: readers never wait for the writer).

_READ_THREADS = 2


async def _read_rows(
    repository: TaskRepository, query: Select[Any], values: dict[str, Any] | None = None
) -> tuple[builtins.list[Sequence[Any]], bool]:
    """The rows of a read, and whether they are raw sqlite3 tuples (see _task_of)."""
    reads = _sqlite_reads(repository)
    if reads is not None:
        return list(await reads.fetch(query, repository.engine.dialect, values or {})), True
    engine = _postgres_reads(repository) or repository.engine
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(query, values or {})).all()), False
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    # The database restarted since that pooled connection was made (the read pool does not
    # ping on checkout): the pool has dropped its stale connections, so try once more.
    async with engine.connect() as conn:
        return list((await conn.execute(query, values or {})).all()), False


def _postgres_reads(repository: TaskRepository) -> AsyncEngine | None:
    """A pool for reads on PostgreSQL, made on first use; None on other databases.

    The store's engine pings every connection it hands out and runs each checkout in a
    transaction that is rolled back on return: four round trips for a one-statement read.
    This pool runs reads in autocommit (each statement sees one committed state) and skips
    the ping; a connection the database dropped fails once and is retried above.
    """
    engine: AsyncEngine | None = getattr(repository, "_postgres_reads", None)
    if engine is None and not hasattr(repository, "_postgres_reads"):
        if repository.engine.dialect.name == "postgresql":
            engine = create_async_engine(
                repository.engine.url,
                pool_size=5,
                max_overflow=10,
                pool_timeout=30,
                pool_recycle=1800,
                pool_pre_ping=False,
                pool_reset_on_return=None,
                isolation_level="AUTOCOMMIT",
            )
        repository._postgres_reads = engine  # type: ignore[attr-defined]
    return engine


_EPOCH_NAIVE = dt.datetime(1970, 1, 1)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class _SqliteReads:
    """Read-only statements on per-thread sqlite3 connections of a database file."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._local = threading.local()
        self._executor = ThreadPoolExecutor(_READ_THREADS, thread_name_prefix="store-read")

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self._path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, isolation_level=None
            )
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
        return conn

    def _run(self, sql: str, params: Sequence[Any]) -> builtins.list[tuple[Any, ...]]:
        return self._connection().execute(sql, params).fetchall()

    async def fetch(
        self, query: Select[Any], dialect: Dialect, values: dict[str, Any]
    ) -> builtins.list[tuple[Any, ...]]:
        """The rows of ``query``, as tuples in its column order."""
        sql, names, defaults = _compiled(query, dialect)
        params = [_sqlite_param(values[n] if n in values else defaults[n]) for n in names]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, sql, params)

    def close(self) -> None:
        self._executor.shutdown(wait=False)


def _sqlite_reads(repository: TaskRepository) -> _SqliteReads | None:
    """The repository's sqlite3 readers, made on first use; None off SQLite files."""
    reads: _SqliteReads | None = getattr(repository, "_sqlite_reads", None)
    if reads is None and not hasattr(repository, "_sqlite_reads"):
        url = repository.engine.url
        database = url.database or ""
        plain_file = database not in ("", ":memory:") and not database.startswith("file:")
        if url.get_backend_name() == "sqlite" and plain_file and not url.query:
            reads = _SqliteReads(str(Path(database).expanduser()))
            weakref.finalize(repository, reads.close)
        repository._sqlite_reads = reads  # type: ignore[attr-defined]
    return reads


_COMPILED: weakref.WeakKeyDictionary[Select[Any], tuple[str, tuple[str, ...], dict[str, Any]]]
_COMPILED = weakref.WeakKeyDictionary()


def _compiled(query: Select[Any], dialect: Dialect) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """SQLite text, parameter names in order, and the values bound in the query itself;
    remembered while the query lives (the read statements are built once per shape)."""
    found = _COMPILED.get(query)
    if found is None:
        compiled = query.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
        found = (str(compiled), tuple(compiled.positiontup or ()), dict(compiled.params))
        _COMPILED[query] = found
    return found


def _sqlite_param(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store times must be timezone-aware")
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def _sqlite_time(value: Any) -> dt.datetime | None:
    """A stored SQLite time as an aware UTC datetime."""
    if value is None:
        return None
    return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)


def _set_time(field: Any, value: dt.datetime) -> None:
    """Sets a Timestamp from an aware datetime, or a naive one in UTC (SQLite's text)."""
    delta = value - (_EPOCH_NAIVE if value.tzinfo is None else _EPOCH)
    field.seconds = delta.days * 86_400 + delta.seconds
    field.nanos = delta.microseconds * 1_000


def _task_of(row: Sequence[Any], names: Sequence[str], raw: bool) -> tasks_pb2.Task:
    """The Task of a ``tasks`` row, as convert.snapshot_to_task(snapshot_from_row(row)).

    ``raw``: straight from sqlite3 (times as text, labels as JSON text, booleans as 0/1).
    """
    r = dict(zip(names, row, strict=True))
    labels = r["labels"]
    if raw:
        labels = json.loads(labels) if labels else {}
        times = {
            name: None if r[name] is None else dt.datetime.fromisoformat(r[name])
            for name in _TIME_COLUMNS
        }
    else:
        times = {name: r[name] for name in _TIME_COLUMNS}
    task = tasks_pb2.Task(
        id=r["id"],
        type=r["type"],
        state=r["state"],
        attempt=r["attempt"],
        max_attempts=r["max_attempts"],
        priority=r["priority"],
        labels=labels or {},
        idempotency_key=r["idempotency_key"] or "",
        version=r["version"],
        cancel_requested=bool(r["cancel_requested"]),
        schedule_id=r["schedule_id"] or "",
        worker_id=r["worker_id"],
    )
    result = r.get("result")
    if result is not None:
        task.result.ParseFromString(result)
    if r["error"] is not None:
        task.error.ParseFromString(r["error"])
    if r["attempt_errors"]:
        # A serialized Task holding only attempt_errors: merging appends them in order.
        task.MergeFromString(r["attempt_errors"])
    current, total, message = r["progress_current"], r["progress_total"], r["progress_message"]
    if current or total or message:
        task.progress.current = current
        task.progress.total = total
        task.progress.message = message
    if r["timeout_seconds"]:
        task.timeout.FromNanoseconds(round(r["timeout_seconds"] * 1e9))
    for name, value in times.items():
        if value is not None:
            _set_time(getattr(task, name), value)
    return task


_SNAPSHOT_NAMES = [c.name for c in _SNAPSHOT_COLUMNS]
_LISTED_NAMES = [c.name for c in _LISTED_COLUMNS]
