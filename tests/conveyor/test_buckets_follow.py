"""Following a bucket: its entries, then every change; "loaded" only once every entry
present at the start was delivered, whatever the watch says."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.js.kv import KeyValue

from conveyor import buckets, jetstream, subjects
from conveyor.config import CommonSettings
from tests.support.early_watch import EarlyCaughtUp


class EarlyKV:
    """The bucket, with a watch that says it caught up before its entries come."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def watchall(self) -> Any:
        return EarlyCaughtUp(await self.kv.watchall())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kv, name)


@pytest.fixture
async def bucket(common: CommonSettings) -> AsyncIterator[KeyValue]:
    nc, js = await jetstream.setup(common, "follow-test")
    buckets = await jetstream.ensure_buckets(js, common)
    yield buckets[subjects.KV_QUEUES]
    await jetstream.close(nc)


async def test_loaded_comes_after_every_entry_present_and_changes_follow(
    bucket: KeyValue,
) -> None:
    for i in range(30):
        await bucket.put(f"type{i}", f"v{i}".encode())
    await bucket.put("gone", b"x")
    await bucket.delete("gone")
    seen: dict[str, bytes | None] = {}
    at_loaded: dict[str, bytes | None] = {}
    loaded = asyncio.Event()

    async def on_change(key: str, value: bytes | None) -> None:
        seen[key] = value

    def on_loaded() -> None:
        at_loaded.update(seen)
        loaded.set()

    following = asyncio.create_task(buckets.follow(EarlyKV(bucket), on_change, on_loaded))  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(30):
            await loaded.wait()
        assert at_loaded == {f"type{i}": f"v{i}".encode() for i in range(30)}
        await bucket.put("type3", b"changed")
        await bucket.delete("type4")
        async with asyncio.timeout(30):
            while seen.get("type3") != b"changed" or seen.get("type4", b"") is not None:
                await asyncio.sleep(0.02)
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)


class StartAnswered:
    """The bucket, with a watch whose last set-up reply arrives in the loop turn the test
    stops the watch, awaited as nats-py awaits each reply (``asyncio.wait_for``)."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self.asking = asyncio.Event()
        self.reply: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def watchall(self) -> Any:
        watcher = await self.kv.watchall()
        self.asking.set()
        await asyncio.wait_for(self.reply, 5)
        return watcher

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kv, name)


@pytest.mark.parametrize("loaded", [False, True], ids=["watch", "watch-and-load"])
async def test_a_watch_stopped_as_nats_answers_its_start_still_stops(
    bucket: KeyValue, loaded: bool
) -> None:
    """On Python 3.11, ``wait_for`` loses a cancel that comes with the reply (CPython issue
    86296): the watch went on to wait for changes, and whoever stopped it waited forever."""
    kv = StartAnswered(bucket)

    async def on_change(key: str, value: bytes | None) -> None:
        pass

    following = asyncio.create_task(
        buckets.follow(kv, on_change, (lambda: None) if loaded else None)  # type: ignore[arg-type]
    )
    async with asyncio.timeout(10):
        await kv.asking.wait()
    kv.reply.set_result(None)
    following.cancel()
    done, _ = await asyncio.wait({following}, timeout=5)
    assert following in done, "the watch ran on after it was stopped"
    assert following.cancelled()
