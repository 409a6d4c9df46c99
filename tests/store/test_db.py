"""Engines, migrations and concurrent writers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from store.db import create_engine, migrate
from store.repository import TaskRepository
from tests.store.factories import Stream, submitted


async def test_sqlite_engine_creates_its_folder_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "conveyor.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await migrate(engine)
        async with engine.connect() as conn:
            journal = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
            foreign_keys = (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one()
    finally:
        await engine.dispose()
    assert path.is_file()
    assert (journal, foreign_keys) == ("wal", 1)


async def test_two_writers_apply_a_batch_once(engine: AsyncEngine, database_url: str) -> None:
    # A second store replica (its own engine) receiving the same batch at the same time.
    other = create_engine(database_url)
    try:
        batch = Stream().number(*(submitted() for _ in range(200)))
        results = await asyncio.gather(
            TaskRepository(engine).apply(batch), TaskRepository(other).apply(batch)
        )
    finally:
        await other.dispose()
    assert sorted(len(changes) for changes in results) == [0, 200]
    page, _ = await TaskRepository(engine).list(page_size=1000)
    assert len(page) == 200


async def test_concurrent_migrations_do_not_collide(database_url: str) -> None:
    engines = [create_engine(database_url) for _ in range(3)]
    try:
        await asyncio.gather(*(migrate(e) for e in engines))
        assert await TaskRepository(engines[0]).applied_sequence() == 0
    finally:
        for e in engines:
            await e.dispose()
