"""``buckets.keys``: the keys of a bucket holding a value now, against a real
nats-server; exact every time, where ``KeyValue.keys()`` can return too few (nats-py
issue #842)."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from conveyor import buckets


async def test_keys_are_those_holding_a_value(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    _, js = nats_connection
    kv = await js.create_key_value(bucket="keys_test", history=5)
    assert await buckets.keys(kv) == []
    for name in ("a", "b", "c", "d"):
        await kv.put(name, b"1")
    await kv.put("a", b"2")  # a second revision: still one key
    await kv.delete("b")
    await kv.purge("c")
    assert sorted(await buckets.keys(kv)) == ["a", "d"]
    # The consumer made for each call is gone afterwards.
    info = await js.stream_info("KV_keys_test")
    assert info.state.consumer_count == 0


async def test_many_keys_and_many_calls_at_once_are_all_exact(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    _, js = nats_connection
    kv = await js.create_key_value(bucket="keys_many")
    names = [f"type_{i:04d}" for i in range(700)]  # more than one fetch's batch
    await asyncio.gather(*(kv.put(name, b"x") for name in names))
    results = await asyncio.gather(*(buckets.keys(kv) for _ in range(20)))
    assert all(sorted(found) == names for found in results)
