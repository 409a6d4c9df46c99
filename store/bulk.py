"""The write path's bulk SQL: loading a batch's tasks, and one driver-level
``executemany`` per statement for the rows a batch writes.

Rows go to the driver pre-converted (store.rows) as tuples: SQLAlchemy's per-row parameter
processing of Core ``executemany`` was the largest cost of a batch.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Dialect, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from store.db import InlineSqlite
from store.models import parked_events, store_cursor, task_history, task_labels, tasks
from store.rows import (
    INSERT_KEYS,
    SNAPSHOT_COLUMNS,
    SNAPSHOT_NAMES,
    UPDATE_KEYS,
    snapshot_from_row,
    snapshot_from_sqlite,
)
from store.transitions import Snapshot

ID_CHUNK = 1000  # ids per IN (...) list: well under every driver's parameter limit


async def load(
    conn: AsyncConnection, sqlite: InlineSqlite | None, ids: set[str]
) -> dict[str, Snapshot]:
    """The snapshots of the tasks with these ids that exist, by id."""
    ordered = sorted(ids)
    loaded: dict[str, Snapshot] = {}
    for start in range(0, len(ordered), ID_CHUNK):
        chunk = ordered[start : start + ID_CHUNK]
        if sqlite is not None:
            # Straight to sqlite3 (store.db.InlineSqlite); values come back as SQLite
            # keeps them and are converted here (see snapshot_from_sqlite).
            sql = f"{_LOAD_SQL}({', '.join('?' * len(chunk))})"
            for raw in sqlite.fetchall(sql, chunk):
                snapshot = snapshot_from_sqlite(raw)
                loaded[snapshot.id] = snapshot
            continue
        result = await conn.execute(select(*SNAPSHOT_COLUMNS).where(tasks.c.id.in_(chunk)))
        for row in result:
            snapshot = snapshot_from_row(row._mapping)
            loaded[snapshot.id] = snapshot
    return loaded


_LOAD_SQL = f"SELECT {', '.join(SNAPSHOT_NAMES)} FROM tasks WHERE id IN "


_UPDATE_TASK = update(tasks).where(tasks.c.id == bindparam("b_id"))
_WRITES: dict[str, tuple[Any, tuple[str, ...]]] = {
    "insert": (insert(tasks), INSERT_KEYS),
    "update": (_UPDATE_TASK, UPDATE_KEYS),
    "labels": (insert(task_labels), ("task_id", "key", "value", "create_time")),
    "history": (insert(task_history), ("task_id", "version", "snapshot")),
    "park": (insert(parked_events), ("sequence", "position", "task_id", "event", "park_time")),
    "unpark": (
        delete(parked_events).where(
            parked_events.c.sequence == bindparam("b_sequence"),
            parked_events.c.position == bindparam("b_position"),
        ),
        ("b_sequence", "b_position"),
    ),
    "cursor": (
        update(store_cursor)
        .where(store_cursor.c.id == bindparam("b_id"))
        .values(applied_sequence=bindparam("b_applied"), applied_time_us=bindparam("b_time")),
        ("b_applied", "b_time", "b_id"),
    ),
}
_WRITE_SQL: weakref.WeakKeyDictionary[Dialect, dict[str, str]] = weakref.WeakKeyDictionary()


async def executemany(
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
