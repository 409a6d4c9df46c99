"""The store's PostgreSQL database goes away under load (every connection cut, new ones
refused) and comes back: the store keeps its place in the event stream, catches up, and
nothing is lost.

The shared PostgreSQL server is not stopped (other tests use it): the test database alone
is closed to connections and its sessions are terminated, which is what the store sees
of a database restart or failover.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import NatsServer
from tests.faults.conftest import Cluster
from tests.store.conftest import (
    POSTGRES_PASSWORD,
    POSTGRES_USER,
    postgres_address,
    postgres_admin,
)
from tests.support.checks import Load, audit

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.timeout(180)]

OUTAGE_SECONDS = 4.0


@pytest.fixture
async def database() -> AsyncIterator[tuple[str, psycopg.AsyncConnection[tuple[object, ...]]]]:
    """A fresh database's name, and an admin connection to open and close it."""
    try:
        connection = await postgres_admin()
    except psycopg.Error as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    name = f"conveyor_fault_{uuid.uuid4().hex[:16]}"
    async with connection:
        await connection.execute(f'CREATE DATABASE "{name}"')
        try:
            yield name, connection
        finally:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_database_outage_under_load_loses_nothing(
    database: tuple[str, psycopg.AsyncConnection[tuple[object, ...]]],
    nats_file_server: NatsServer,
    tmp_path: Path,
) -> None:
    name, pg = database
    host, port = postgres_address()
    url = f"postgresql+asyncpg://{POSTGRES_USER}:{POSTGRES_PASSWORD}@{host}:{port}/{name}"
    cluster = Cluster(
        tmp_path, nats_file_server.url, CONVEYOR_DATABASE_URL=url, CONVEYOR_STORE_MIGRATE="always"
    )
    try:
        await cluster.start(workers=2)
        load = Load(cluster.stub).start()
        await load.until(300)
        await pg.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await pg.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        # Submits and work go on: they need JetStream only.
        accepted_before = len(load.accepted)
        await asyncio.sleep(OUTAGE_SECONDS)
        await pg.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert len(load.accepted) > accepted_before
        await load.until(len(load.accepted) + 300)
        await load.stop()

        assert not load.errors, load.errors
        assert cluster.dead() == {}
        await audit(cluster.stub, cluster.database, cluster.nats_url, load.accepted, timeout=120)
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        await cluster.close()
