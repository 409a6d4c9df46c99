"""Start-up and the schema: SQLite (one store owns the file) migrates by itself; on
PostgreSQL the replicas wait for ``python -m store migrate`` and say so."""

from __future__ import annotations

import pytest

from store.db import SchemaNotCurrent, create_engine, migrate, prepare_schema


async def test_auto_migrates_sqlite_at_start_up(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        if engine.dialect.name == "sqlite":
            await prepare_schema(engine, "auto")
        else:
            with pytest.raises(SchemaNotCurrent, match="python -m store migrate"):
                await prepare_schema(engine, "auto")
            await migrate(engine)
        await prepare_schema(engine, "never")  # current now: starts
    finally:
        await engine.dispose()


async def test_never_refuses_a_database_behind(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with pytest.raises(SchemaNotCurrent, match="revision none"):
            await prepare_schema(engine, "never")
        await prepare_schema(engine, "always")
        await prepare_schema(engine, "never")
    finally:
        await engine.dispose()
