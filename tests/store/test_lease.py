"""The writer lease (store.lease) on a real NATS KV bucket, and its fencing epoch in the
database (TaskRepository.claim_writer): one writer at a time, and a writer that lost the
lease commits nothing, however long it slept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from nats.js.kv import KeyValue
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from store.db import create_engine, migrate
from store.lease import LEASE_KEY, Lease, WriterLease
from store.models import CURSOR_ID, store_cursor
from store.repository import Fenced, TaskRepository
from tests.conftest import NatsServer
from tests.support.factories import Stream, submitted
from tests.support.nats_client import jetstream

SECONDS = 10.0


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def bucket(nats_server: NatsServer) -> AsyncIterator[KeyValue]:
    async with jetstream(nats_server.url) as js:
        yield await js.create_key_value(bucket="conveyor_store")


async def test_one_holder_renews_and_a_standby_takes_over_only_after_a_whole_period(
    bucket: KeyValue,
) -> None:
    clock = Clock()
    a = WriterLease(bucket, "a", SECONDS, clock)
    b = WriterLease(bucket, "b", SECONDS, clock)
    assert await a.tick()
    assert a.epoch == 1
    assert not await b.tick()

    clock.now += 0.5 * SECONDS
    assert await a.tick()  # renewed
    assert not await b.tick()  # b sees a new revision: its wait starts again
    clock.now += 0.99 * SECONDS
    assert not await b.tick()
    assert not a.held  # a stopped renewing: it no longer counts itself the holder...
    clock.now += 0.02 * SECONDS
    assert await b.tick()  # ...well before b takes the lease over
    assert b.epoch == 2
    assert not await a.tick()  # a's renewal finds b's revision
    assert not await a.tick()  # and a waits a whole period for b as well


async def test_a_released_lease_is_taken_at_once_with_an_epoch_above_the_databases(
    bucket: KeyValue,
) -> None:
    clock = Clock()
    a = WriterLease(bucket, "a", SECONDS, clock)
    b = WriterLease(bucket, "b", SECONDS, clock)
    assert await a.tick()
    await a.release()
    assert not a.held
    assert await b.tick(floor=41)  # the database saw epoch 41 (a bucket made again)
    assert b.epoch == 42
    entry = await bucket.get(LEASE_KEY)
    assert Lease.decode(entry.value) == Lease("b", 42)


async def test_an_unreadable_lease_value_reads_as_free(bucket: KeyValue) -> None:
    await bucket.put(LEASE_KEY, b"\xff not json")
    lease = WriterLease(bucket, "a", SECONDS, Clock())
    assert await lease.tick()
    assert lease.epoch == 1


async def test_a_writer_that_lost_the_database_commits_nothing(engine: AsyncEngine) -> None:
    stream = Stream()
    old, new = TaskRepository(engine), TaskRepository(engine)
    assert await old.claim_writer(1)
    await old.apply(stream.number(submitted()))
    assert await new.claim_writer(2)  # the standby took over while `old` was paused

    batch = stream.number(submitted())
    with pytest.raises(Fenced):
        await old.apply(batch)
    assert await old.applied_sequence() == 1
    assert not await old.claim_writer(1)  # an older epoch never claims it back

    changes = await new.apply(batch)  # the new writer applies it, once
    assert [task.version for task in changes] == [1]
    assert await new.applied_sequence() == 2
    assert await new.writer_epoch() == 2


@pytest.mark.postgres
async def test_a_writer_paused_inside_its_batch_does_not_hold_up_the_takeover(
    postgres_url: str,
) -> None:
    """The paused writer's open transaction holds the cursor row that the new writer's
    claim needs: past the claim's patience its session is ended, the claim succeeds, and
    the paused batch never commits."""
    engine = create_engine(postgres_url)
    try:
        await migrate(engine)
        new = TaskRepository(engine)
        async with engine.connect() as paused:
            await paused.begin()
            await paused.execute(
                update(store_cursor).where(store_cursor.c.id == CURSOR_ID).values(writer_epoch=1)
            )
            # The paused writer does nothing more; the claim ends its session.
            assert await asyncio.wait_for(new.claim_writer(2, patience=0.3), 30)
            with pytest.raises(DBAPIError):
                await paused.commit()
        assert await new.writer_epoch() == 2
    finally:
        await engine.dispose()
