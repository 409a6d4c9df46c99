"""Writers on SQLite take the database's write lock when their transaction begins."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from store import db
from store import repository as repository_module
from store.db import create_engine, migrate, write_transaction
from store.repository import TaskRepository
from tests.support.factories import Stream, submitted


def assert_write_lock_free(path: Path) -> None:
    """Another connection takes the write lock at once: nothing is left holding it."""
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()


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
            assert_write_lock_free(path)
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
        assert_write_lock_free(path)
    finally:
        await engine.dispose()


@pytest.fixture
async def on_file(tmp_path: Path) -> AsyncIterator[tuple[Path, TaskRepository]]:
    """A migrated SQLite file and a repository on it."""
    path = tmp_path / "conveyor.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await migrate(engine)
        yield path, TaskRepository(engine)
    finally:
        await engine.dispose()


def _task_ids(count: int) -> list[str]:
    return [f"01jn{n:022d}" for n in range(count)]


async def test_a_batch_waits_for_another_writers_lock_without_blocking_the_loop(
    on_file: tuple[Path, TaskRepository],
) -> None:
    """The store's batches begin on the event loop's thread without waiting; when another
    connection holds the write lock the batch waits for it in aiosqlite's thread, and
    everything else on the loop (reads, watch fan-out) goes on meanwhile."""
    path, repository = on_file
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    applying = asyncio.create_task(repository.apply(Stream().number(submitted("01jn1"))))
    # A batch waiting on the loop's thread would hold the loop until the busy timeout
    # (30 s), then fail: the sleep would end late, with the batch done.
    await asyncio.sleep(0.2)
    assert not applying.done()
    other.execute("ROLLBACK")
    other.close()
    changes = await asyncio.wait_for(applying, timeout=10)
    assert [task.id for task in changes] == ["01jn1"]
    assert await repository.applied_sequence() == 1


async def test_a_failed_batch_is_rolled_back_and_releases_the_write_lock(
    on_file: tuple[Path, TaskRepository], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, repository = on_file
    stream = Stream()
    await repository.apply(stream.number(submitted("01jn1")))
    written = repository_module._write

    async def write_then_fail(*args: Any) -> None:
        await written(*args)  # the rows are in the transaction when it fails
        raise RuntimeError("disk full")

    monkeypatch.setattr(repository_module, "_write", write_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        await repository.apply(stream.number(submitted("01jn2")))
    monkeypatch.undo()
    assert await repository.applied_sequence() == 1
    assert await repository.get("01jn2") is None
    assert_write_lock_free(path)
    changes = await repository.apply(stream.number(submitted("01jn3")))
    assert [task.id for task in changes] == ["01jn3"]


@pytest.mark.parametrize("every", [0.0, 3600.0])
async def test_the_store_checkpoints_its_wal_on_its_own_schedule(
    on_file: tuple[Path, TaskRepository], monkeypatch: pytest.MonkeyPatch, every: float
) -> None:
    """SQLite's automatic checkpoint (inside a commit, with syncs) is off on the store's
    connections; the store runs one after a commit every CHECKPOINT_EVERY. With a
    checkpoint after every commit the WAL stays a few pages long; with none it grows."""
    monkeypatch.setattr(db, "CHECKPOINT_EVERY", every)
    path, repository = on_file
    stream = Stream()
    for batch in range(300):
        ids = _task_ids(batch * 5 + 5)[-5:]
        await repository.apply(stream.number(*(submitted(task_id) for task_id in ids)))
    wal = Path(f"{path}-wal").stat().st_size
    pages = wal // 4096
    if every == 0.0:
        assert pages < 100, f"WAL of {pages} pages with a checkpoint after each batch"
    else:
        # SQLite's own checkpoint would have restarted it at 1,000 pages (its default)
        assert pages > 2000, f"WAL of only {pages} pages: something checkpointed it"
    with contextlib.closing(sqlite3.connect(path)) as reader:
        assert reader.execute("SELECT count(*) FROM tasks").fetchone()[0] == 1500


async def test_a_failed_checkpoint_does_not_fail_the_committed_batch(
    on_file: tuple[Path, TaskRepository], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint runs after the commit: were its failure the batch's, the retry would
    find the batch applied and its changes would never reach the task's watchers."""
    monkeypatch.setattr(db, "CHECKPOINT_EVERY", 0.0)

    async def failing(_driver: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(db, "_checkpoint", failing)
    _, repository = on_file
    stream = Stream()
    for task_id in ("01jn1", "01jn2"):
        changes = await repository.apply(stream.number(submitted(task_id)))
        assert [task.id for task in changes] == [task_id]
    assert await repository.applied_sequence() == 2
