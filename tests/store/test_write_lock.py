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
