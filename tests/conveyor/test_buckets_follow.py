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
