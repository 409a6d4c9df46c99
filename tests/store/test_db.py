"""Engines, migrations and concurrent writers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from store.db import alembic_config, create_engine, migrate
from store.models import parked_events, task_labels, tasks
from store.repository import TaskRepository
from tests.support.factories import Stream, at, submitted


@pytest.fixture
async def engine_0001(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a database migrated only to the first revision."""
    created = create_engine(database_url)
    try:
        async with created.begin() as conn:
            await conn.run_sync(_upgrade_to("0001"))
        yield created
    finally:
        await created.dispose()


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


def _upgrade_to(revision: str) -> Callable[[Connection], None]:
    def upgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    return upgrade


async def test_upgrade_from_0001_keeps_tasks_listable_by_label(engine_0001: AsyncEngine) -> None:
    stream = Stream()
    old = [submitted(created=at(i), labels={"team": "a", "n": str(i)}) for i in range(5)]
    # Today's writer stands in for a 0001 store's: it writes the same task and label rows,
    # and only looks for parked events (0003) too, in a table made for it and dropped, and
    # writes the labels' create time (0002), the cursor's time (0004), the namespace (0005)
    # and the trace id (0007) in columns made for them and dropped: the old labels get
    # their create time from 0002, and the old tasks are listed below in the default
    # namespace, which 0005 gives them, with the empty trace id 0007 gives them.
    label_time = "ALTER TABLE task_labels {} COLUMN create_time"
    cursor_time = "ALTER TABLE store_cursor {} COLUMN applied_time_us"
    namespace = "ALTER TABLE tasks {} COLUMN namespace"
    trace_id = "ALTER TABLE tasks {} COLUMN trace_id"
    async with engine_0001.begin() as conn:
        await conn.run_sync(parked_events.create)
        await conn.exec_driver_sql(label_time.format("ADD") + " TIMESTAMP WITH TIME ZONE")
        await conn.exec_driver_sql(cursor_time.format("ADD") + " BIGINT")
        await conn.exec_driver_sql(namespace.format("ADD") + " TEXT")
        await conn.exec_driver_sql(trace_id.format("ADD") + " TEXT")
    await TaskRepository(engine_0001).apply(stream.number(*old))
    async with engine_0001.begin() as conn:
        await conn.run_sync(parked_events.drop)
        await conn.exec_driver_sql(label_time.format("DROP"))
        await conn.exec_driver_sql(cursor_time.format("DROP"))
        await conn.exec_driver_sql(namespace.format("DROP"))
        await conn.exec_driver_sql(trace_id.format("DROP"))
    await migrate(engine_0001)  # 0001 -> head, as a store upgrading in place does
    repository = TaskRepository(engine_0001)
    new = [submitted(created=at(10 + i), labels={"team": "a"}) for i in range(3)]
    await repository.apply(stream.number(*new))
    expected = [e.task_id for e in reversed(old + new)]
    page, token = await repository.list(labels={"team": "a"}, page_size=4)
    rest, last = await repository.list(labels={"team": "a"}, page_size=4, page_token=token)
    assert ([t.id for t in page + rest], last) == (expected, "")
    assert {t.trace_id for t in page + rest} == {""}
    only, _ = await repository.list(labels={"team": "a", "n": "3"})
    assert [t.id for t in only] == [old[3].task_id]
    async with engine_0001.connect() as conn:
        missing = await conn.execute(
            text("SELECT count(*) FROM task_labels WHERE create_time IS NULL")
        )
        assert missing.scalar_one() == 0


async def test_label_rows_get_their_task_create_time(engine: AsyncEngine) -> None:
    event = submitted(created=at(42), labels={"team": "a", "env": "prod"})
    await TaskRepository(engine).apply(Stream().number(event))
    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(task_labels.c.create_time, tasks.c.create_time).join(tasks))
        ).all()
    assert len(rows) == 2 and all(label == task == at(42) for label, task in rows)


def _downgrade_to(revision: str) -> Callable[[Connection], None]:
    def downgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    return downgrade


async def test_parked_events_keyed_by_position_from_0008_and_back(database_url: str) -> None:
    engine = create_engine(database_url)
    park = text(
        "INSERT INTO parked_events (sequence, task_id, event, park_time) "
        "VALUES (:sequence, :task_id, :event, :park_time)"
    )
    park_at = text(
        "INSERT INTO parked_events (sequence, position, task_id, event, park_time) "
        "VALUES (7, 1, 'b', :event, :park_time)"
    )
    rows = text("SELECT sequence, position, task_id FROM parked_events ORDER BY 1, 2")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade_to("0007"))
            # An event parked by a store before 0008: a lone one, by its sequence only.
            values = {"task_id": "a", "event": b"x", "park_time": at(0)}
            await conn.execute(park, {"sequence": 7, **values})
        await migrate(engine)
        async with engine.begin() as conn:
            # A second event of the same message (a batch) now has a place of its own.
            await conn.execute(park_at, {"event": b"y", "park_time": at(1)})
            assert [tuple(r) for r in await conn.execute(rows)] == [(7, 0, "a"), (7, 1, "b")]
        with pytest.raises(RuntimeError, match="events of batches"):
            async with engine.begin() as conn:
                await conn.run_sync(_downgrade_to("0007"))
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM parked_events WHERE position = 1"))
            await conn.run_sync(_downgrade_to("0007"))
            kept = await conn.execute(text("SELECT sequence, task_id FROM parked_events"))
            assert [tuple(r) for r in kept] == [(7, "a")]
            with pytest.raises(IntegrityError):  # keyed by sequence alone again
                async with conn.begin_nested():
                    await conn.execute(park, {"sequence": 7, **values, "task_id": "b"})
    finally:
        await engine.dispose()
