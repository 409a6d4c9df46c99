"""How the repository's reads reach the database, one statement each, by back-end.

A read through SQLAlchemy's async engine on aiosqlite costs several thread hand-offs
(checkout, cursor, execute, fetch, close, rollback) and per-value result processing,
many times what SQLite needs to answer a primary-key lookup. On a SQLite file the
repository therefore runs each read as one statement on its own sqlite3 connections, one
hand-off to a small thread pool per read, and builds Task messages straight from the row
tuples (store.rows.task_of). Each read is a single statement in autocommit mode, so it
sees one committed state (WAL: readers never wait for the writer). On PostgreSQL reads go
through a pool of their own (see Reads._postgres_engine); elsewhere through the engine.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import Dialect, Select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from store.db import SQLITE_BUSY_TIMEOUT_MS

_READ_THREADS = 2


class Reads:
    """Runs read statements for a repository; its back-ends are made on first use."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._made = False
        self._sqlite: _SqliteReads | None = None
        self._postgres: AsyncEngine | None = None

    async def rows(
        self, query: Select[Any], values: dict[str, Any] | None = None
    ) -> tuple[list[Sequence[Any]], bool]:
        """The rows of a read, and whether they are raw sqlite3 tuples (see rows.task_of)."""
        if not self._made:
            self._make()
        if self._sqlite is not None:
            return list(await self._sqlite.fetch(query, self._engine.dialect, values or {})), True
        engine = self._postgres or self._engine
        try:
            async with engine.connect() as conn:
                return list((await conn.execute(query, values or {})).all()), False
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        # The database restarted since that pooled connection was made (the read pool does
        # not ping on checkout): the pool has dropped its stale connections, so try again.
        async with engine.connect() as conn:
            return list((await conn.execute(query, values or {})).all()), False

    def _make(self) -> None:
        self._made = True
        url = self._engine.url
        database = url.database or ""
        plain_file = database not in ("", ":memory:") and not database.startswith("file:")
        if url.get_backend_name() == "sqlite" and plain_file and not url.query:
            self._sqlite = _SqliteReads(str(Path(database).expanduser()))
            weakref.finalize(self, self._sqlite.close)
        elif self._engine.dialect.name == "postgresql":
            self._postgres = self._postgres_engine()

    def _postgres_engine(self) -> AsyncEngine:
        """A pool for reads on PostgreSQL.

        The store's engine pings every connection it hands out and runs each checkout in a
        transaction that is rolled back on return: four round trips for a one-statement
        read. This pool runs reads in autocommit (each statement sees one committed state)
        and skips the ping; a connection the database dropped fails once and is retried.
        """
        return create_async_engine(
            self._engine.url,
            pool_size=5,
            max_overflow=10,
            pool_timeout=30,
            pool_recycle=1800,
            pool_pre_ping=False,
            pool_reset_on_return=None,
            isolation_level="AUTOCOMMIT",
        )


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

    def _run(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._connection().execute(sql, params).fetchall()

    async def fetch(
        self, query: Select[Any], dialect: Dialect, values: dict[str, Any]
    ) -> list[tuple[Any, ...]]:
        """The rows of ``query``, as tuples in its column order."""
        sql, names, defaults = _compiled(query, dialect)
        params = [_sqlite_param(values[n] if n in values else defaults[n]) for n in names]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, sql, params)

    def close(self) -> None:
        self._executor.shutdown(wait=False)


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
