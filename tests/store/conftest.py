"""Database fixtures: every repository test runs on SQLite and on PostgreSQL.

PostgreSQL is expected on ``CONVEYOR_TEST_POSTGRES`` (host:port, default 127.0.0.1:5432)
with the superuser role conveyor/conveyor. Each test gets its own database, dropped
afterwards. Without a reachable server the PostgreSQL variants skip, except under CI
(``CI=true``), where they fail: CI must prove both databases.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from store.db import create_engine, migrate
from store.repository import TaskRepository

POSTGRES_USER = "conveyor"
POSTGRES_PASSWORD = "conveyor"


def postgres_address() -> tuple[str, int]:
    """The host and port of the test PostgreSQL server."""
    host, _, port = os.environ.get("CONVEYOR_TEST_POSTGRES", "127.0.0.1:5432").rpartition(":")
    return host or "127.0.0.1", int(port)


async def postgres_admin() -> psycopg.AsyncConnection[tuple[object, ...]]:
    """A connection to the test server's maintenance database, in autocommit."""
    host, port = postgres_address()
    return await psycopg.AsyncConnection.connect(
        host=host,
        port=port,
        user=POSTGRES_USER,
        password=POSTGRES_PASSWORD,
        dbname="postgres",
        autocommit=True,  # CREATE/DROP DATABASE cannot run in a transaction
        connect_timeout=3,
    )


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """The URL of a fresh, empty PostgreSQL database, dropped after the test."""
    try:
        admin = await postgres_admin()
    except psycopg.Error as exc:
        host, port = postgres_address()
        message = f"PostgreSQL unreachable at {host}:{port} as {POSTGRES_USER}: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    name = f"conveyor_test_{uuid.uuid4().hex[:16]}"
    async with admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
        host, port = postgres_address()
        try:
            yield f"postgresql+asyncpg://{POSTGRES_USER}:{POSTGRES_PASSWORD}@{host}:{port}/{name}"
        finally:
            # FORCE: a connection the test leaked must not keep the database alive.
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file in tmp_path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        # A folder that does not exist yet: create_engine must make it.
        return f"sqlite+aiosqlite:///{tmp_path / 'db' / 'conveyor.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the migrated test database, disposed after the test."""
    created = create_engine(database_url)
    try:
        await migrate(created)
        yield created
    finally:
        await created.dispose()


@pytest.fixture
def repository(engine: AsyncEngine) -> TaskRepository:
    """A repository on the migrated test database."""
    return TaskRepository(engine)
