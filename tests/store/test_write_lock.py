"""Writers on SQLite take the database's write lock when their transaction begins."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from store.db import create_engine, migrate, write_transaction


async def test_a_write_transaction_holds_the_sqlite_write_lock_from_its_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "conveyor.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await migrate(engine)
        async with write_transaction(engine):
            other = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    other.execute("BEGIN IMMEDIATE")
            finally:
                other.close()
        async with engine.connect() as conn:  # a plain transaction takes no write lock
            await conn.exec_driver_sql("SELECT 1")
            other = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
            finally:
                other.close()
    finally:
        await engine.dispose()


async def test_connections_go_back_to_the_pool_outside_any_transaction(tmp_path: Path) -> None:
    """The pool does not roll back returned connections (one hand-off less per batch): a
    read, a failed write and a committed one must each end their transaction, or the
    next BEGIN IMMEDIATE fails and the write lock stays held."""
    path = tmp_path / "conveyor.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await migrate(engine)
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
        with pytest.raises(RuntimeError):
            async with write_transaction(engine) as conn:
                await conn.exec_driver_sql("UPDATE store_cursor SET applied_sequence = 7")
                raise RuntimeError("the batch failed")
        async with write_transaction(engine) as conn:
            stored = await conn.exec_driver_sql("SELECT applied_sequence FROM store_cursor")
            assert stored.scalar_one() == 0  # the failed write was rolled back
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # nothing left holding the write lock
            other.execute("ROLLBACK")
        finally:
            other.close()
    finally:
        await engine.dispose()
