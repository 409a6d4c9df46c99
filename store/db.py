"""Database engines and schema migrations for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import await_

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite statement waits for another connection's write lock before failing."""

_IMMEDIATE = "conveyor_sqlite_immediate"
_MIGRATION_LOCK = 0x636F6E76  # "conv": any constant shared by every store replica


def create_engine(url: str) -> AsyncEngine:
    """An async engine for ``url`` tuned for the store.

    SQLite: creates the file's folder, uses WAL (readers never block the writer),
    ``synchronous=NORMAL`` (durable at checkpoints, safe against corruption), a busy
    timeout and foreign keys; SQLAlchemy emits BEGIN itself so every statement of a
    transaction, reads included, is inside it. PostgreSQL: a checked, bounded pool.

    >>> engine = create_engine("sqlite+aiosqlite:///.conveyor/conveyor.db")  # doctest: +SKIP
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    return create_async_engine(
        parsed,
        pool_size=10,
        max_overflow=10,
        pool_timeout=30,
        pool_pre_ping=True,  # survive a database restart without failing the first query
        pool_recycle=1800,
    )


def _sqlite_engine(url: URL) -> AsyncEngine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        _enable_wal(path)
    # No rollback when a connection goes back to the pool: every use ends its transaction
    # itself (write_transaction commits or rolls back, a plain connection rolls back on
    # close), so the pool's own rollback was one more hand-off to aiosqlite's thread per
    # batch, a tenth of those of a small batch.
    # check_same_thread=False: the applier's statements run on the sqlite3 connection from
    # the event loop's thread, not only from aiosqlite's (InlineSqlite).
    engine = create_async_engine(
        url, pool_reset_on_return=None, connect_args={"check_same_thread": False}
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Stop the sqlite3 module from issuing its own (late, deferred) BEGIN; see _on_begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode")
            if cursor.fetchone()[0] != "wal":  # only for URLs _enable_wal could not handle
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            # Checkpoints are run by InlineWrites, in aiosqlite's thread, not by a commit.
            cursor.execute("PRAGMA wal_autocheckpoint=0")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front: a deferred transaction that reads first
        # fails with SQLITE_BUSY instead of waiting if another writer commits meanwhile.
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        statement = "BEGIN IMMEDIATE" if immediate else "BEGIN"
        driver = conn.connection.driver_connection
        if isinstance(driver, aiosqlite.Connection):
            # Straight to aiosqlite: one hand-off to its thread instead of three (cursor,
            # execute, close) through SQLAlchemy's adapter, on every transaction.
            await_(driver.execute(statement))
        else:
            conn.exec_driver_sql(statement)

    return engine


def _enable_wal(path: Path) -> None:
    """Switches the database file to WAL, which the file remembers, before any pool exists.

    Switching needs an exclusive lock and SQLite answers "database is locked" at once,
    without waiting, when two connections switch together (each holds the shared lock the
    other needs released): so do it once here, retrying, rather than in every connection.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        conn = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        finally:
            conn.close()
        time.sleep(0.02)


@contextlib.asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction meant to write, committed when the block exits.

    On SQLite it holds the database's write lock from the start (``BEGIN IMMEDIATE``), so a
    read-then-write such as checking the applied sequence cannot race another writer.
    """
    async with engine.connect() as conn:
        await conn.execution_options(**{_IMMEDIATE: True})
        async with conn.begin():
            yield conn


async def migrate(engine: AsyncEngine) -> None:
    """Brings the schema to the newest revision (``alembic upgrade head``); safe to repeat.

    Replicas starting together on PostgreSQL take turns through an advisory lock.
    """
    async with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        await conn.run_sync(_upgrade)


class SchemaNotCurrent(RuntimeError):
    """The database's schema is not the one this store needs, and start-up may not
    migrate it."""


async def prepare_schema(engine: AsyncEngine, mode: str) -> None:
    """Migrates the schema at start-up (``mode`` ``always``, or ``auto`` on SQLite, where
    one store owns the file) or checks that it is current (``never``, or ``auto`` on
    PostgreSQL, where ``python -m store migrate`` runs as its own step before the replicas
    start: a migration must not run inside a start-up that a probe can kill)."""
    if mode == "always" or (mode == "auto" and engine.dialect.name == "sqlite"):
        await migrate(engine)
        return
    async with engine.connect() as conn:
        current = await conn.run_sync(_current_revision)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if current != head:
        raise SchemaNotCurrent(
            f"the database's schema is at revision {current or 'none'}, this store needs "
            f"{head}: run `python -m store migrate` first (or set "
            "CONVEYOR_STORE_MIGRATE=always to migrate at start-up)"
        )


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def alembic_config() -> Config:
    """An Alembic configuration pointing at the packaged migrations, no ini file needed."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


class InlineSqlite:
    """Statements run at once on the event loop's thread, on the sqlite3 connection
    under aiosqlite, inside a write transaction that already holds the database's write
    lock (``BEGIN IMMEDIATE``), so no statement waits for a lock. Each call through
    aiosqlite is a hand-off to its thread and back, which costs far more than the
    statement itself: for a batch of one event, most of its cost (docs/performance.md)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def fetchall(self, sql: str, parameters: Sequence[Any]) -> list[Any]:
        return self._connection.execute(sql, parameters).fetchall()

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._connection.executemany(sql, rows)


CHECKPOINT_EVERY = 1.0
"""Seconds between the WAL checkpoints that InlineWrites runs after its commits."""


class InlineWrites:
    """The store's write transactions on SQLite, begun and committed on the event loop's
    thread too, so a batch makes no hand-off to aiosqlite's thread at all in the common
    case (the hand-offs of ``BEGIN`` and ``COMMIT`` dominate a one-event batch).

    Inline only where it cannot wait:

    - ``BEGIN IMMEDIATE`` is tried with no busy timeout; when another connection holds
      the write lock it is issued again through aiosqlite's thread, which waits for it.
    - ``COMMIT`` in WAL mode with ``synchronous=NORMAL`` writes the WAL, never syncs it,
      except the first commit after a checkpoint, which may restart the WAL and sync its
      header: that one goes through aiosqlite's thread, as does the very first.
    - Checkpoints (which sync) are not left to SQLite's automatic checkpoint inside a
      commit (off on the store's connections, see create_engine): one runs, PASSIVE, in
      aiosqlite's thread after a commit at most every CHECKPOINT_EVERY seconds.

    A transaction larger than SQLite's page cache (2 MiB) spills WAL frames during its
    statements and can restart the WAL there, inline; batches are far smaller.
    """

    def __init__(self) -> None:
        self._checkpointed = time.monotonic()
        self._commit_in_thread = True

    @contextlib.asynccontextmanager
    async def transaction(
        self, engine: AsyncEngine
    ) -> AsyncIterator[tuple[AsyncConnection, InlineSqlite]]:
        """A connection in a write transaction and its inline statements, committed when
        the block exits, rolled back if it raises. ``conn`` itself must not run
        statements: SQLAlchemy does not know about the transaction."""
        async with engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert isinstance(driver, aiosqlite.Connection)
            # aiosqlite (pinned) has no public handle on its sqlite3 connection.
            connection: sqlite3.Connection = driver._conn
            try:
                await _begin_immediate(driver, connection)
            except BaseException:
                await conn.invalidate()  # a BEGIN may still be queued in its thread
                raise
            try:
                yield conn, InlineSqlite(connection)
            except BaseException:
                try:
                    connection.rollback()
                except sqlite3.Error:
                    await conn.invalidate()
                raise
            try:
                await self._commit(driver, connection)
            except BaseException:
                await conn.invalidate()  # a COMMIT or checkpoint may still be in its thread
                raise

    async def _commit(self, driver: aiosqlite.Connection, connection: sqlite3.Connection) -> None:
        if self._commit_in_thread:
            await driver.commit()
            self._commit_in_thread = False
        else:
            connection.commit()
        if time.monotonic() - self._checkpointed >= CHECKPOINT_EVERY:
            # The batch is committed: a failed checkpoint must not make it look failed (a
            # retry would find it applied and its changes would never reach watchers).
            try:
                await _checkpoint(driver)
            except Exception as exc:
                log.warning("checkpointing the SQLite WAL failed: %s", exc)
            self._checkpointed = time.monotonic()
            self._commit_in_thread = True


async def _checkpoint(driver: aiosqlite.Connection) -> None:
    await driver.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")  # fetched: the statement ends


async def _begin_immediate(driver: aiosqlite.Connection, connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA busy_timeout=0")
    try:
        connection.execute("BEGIN IMMEDIATE")
        return
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:  # primary code of BUSY_*
            raise
    finally:
        connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    await driver.execute("BEGIN IMMEDIATE")  # another writer has the lock: wait in the thread


def inline_writes(engine: AsyncEngine) -> InlineWrites | None:
    """Inline write transactions for an engine on SQLite through aiosqlite; else None."""
    if engine.dialect.name == "sqlite" and engine.dialect.driver == "aiosqlite":
        return InlineWrites()
    return None
