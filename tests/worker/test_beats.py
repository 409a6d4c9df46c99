"""Leases kept by ``worker.attempt.Beats``: a message held past its lease is not
redelivered, one released is, and the beating task ends when nothing is held.

Against a real JetStream consumer with a one-second lease (the shortest allowed)."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from worker.attempt import Beats

LEASE = 1.0
BEAT = LEASE / 2
"""Beats closer than the lease, as a heartbeat's (a third of it): a loaded test machine's
delays stay within the margin."""


async def held_message(js: JetStreamContext) -> tuple[Msg, object]:
    """One message delivered from a fresh stream and consumer with a one-second lease."""
    await js.add_stream(StreamConfig(name="BEATS", subjects=["beats.>"]))
    await js.publish("beats.one", b"task")
    sub = await js.pull_subscribe(
        "beats.>",
        durable="beats",
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=LEASE, max_deliver=-1),
    )
    [msg] = await sub.fetch(1, timeout=2)
    return msg, sub


async def redelivered_within(sub: object, seconds: float) -> bool:
    try:
        await sub.fetch(1, timeout=seconds)  # type: ignore[attr-defined]
    except TimeoutError:
        return False
    return True


async def test_a_message_held_past_its_lease_is_not_redelivered(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    _, js = nats_connection
    msg, sub = await held_message(js)
    beats = Beats(BEAT)
    beats.hold(msg)
    assert not await redelivered_within(sub, 3 * LEASE)  # three leases long
    beats.release(msg)
    await msg.ack()


async def test_a_message_held_twice_is_kept_until_released_twice(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    _, js = nats_connection
    msg, sub = await held_message(js)
    beats = Beats(BEAT)
    beats.hold(msg)
    beats.hold(msg)  # e.g. a progress event published while the handler runs
    beats.release(msg)
    assert not await redelivered_within(sub, 2.5 * LEASE)
    beats.release(msg)
    assert await redelivered_within(sub, 3 * LEASE)  # no longer held: the lease runs out


async def test_the_beating_task_ends_when_nothing_is_held(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    _, js = nats_connection
    msg, _ = await held_message(js)
    beats = Beats(0.2)
    beats.hold(msg)
    beater = beats._beater
    assert beater is not None
    beats.release(msg)
    await asyncio.wait_for(beater, 2)
    assert beats._beater is None
