"""What a delivered message says about itself, read from its reply subject by
``conveyor.pull``: the delivery count and when the stream stored it, as nats-py's
``metadata`` reads them."""

from __future__ import annotations

import time

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from conveyor.pull import delivery_count, stored_at


async def test_delivery_count_and_store_time_agree_with_the_metadata(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    _, js = nats_connection
    await js.add_stream(StreamConfig(name="DELIVERY", subjects=["delivery.>"]))
    before = time.time()
    await js.publish("delivery.one", b"task")
    sub = await js.pull_subscribe(
        "delivery.>", durable="d", config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT)
    )
    [first] = await sub.fetch(1, timeout=2)
    assert delivery_count(first) == 1 == first.metadata.num_delivered
    stored = stored_at(first)
    assert stored is not None
    assert before - 1 <= stored <= time.time() + 1
    assert abs(stored - first.metadata.timestamp.timestamp()) < 1e-5  # µs in a datetime
    await first.nak()
    [second] = await sub.fetch(1, timeout=2)
    assert delivery_count(second) == 2 == second.metadata.num_delivered
    assert stored_at(second) == stored  # the same stored message
    await second.ack()
