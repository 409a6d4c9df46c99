"""The store's own pull requests, against a real nats-server: every event once, in order,
without waiting out the fetch timeout."""

from __future__ import annotations

import asyncio
import time

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DEFAULT_PREFIX

from conveyor import subjects
from conveyor.pull import stream_sequence
from store.consumer import consumer_config
from store.pull import Puller


async def publish(js: JetStreamContext, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        await js.publish(f"{subjects.EVENTS_PREFIX}.test", str(i).encode())


async def puller(nc: NATS, js: JetStreamContext) -> Puller:
    await js.add_consumer(subjects.STREAM_EVENTS, consumer_config())
    pull = Puller(
        nc,
        f"{DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.{subjects.STREAM_EVENTS}.{subjects.STORE_CONSUMER}",
    )
    await pull.start()
    return pull


async def test_a_backlog_comes_in_batches_in_order(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    nc, js = nats_connection
    await publish(js, 25)
    pull = await puller(nc, js)
    first = await pull.fetch(10, timeout=1.0)
    rest = await pull.fetch(100, timeout=1.0)
    assert [m.data for m in first + rest] == [str(i).encode() for i in range(25)]
    assert len(first) == 10
    assert [stream_sequence(m) for m in first + rest] == list(range(1, 26))
    await rest[-1].ack()  # ack-all: the whole backlog
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        await pull.fetch(100, timeout=0.3)
    assert time.monotonic() - start < 0.3 + 1.0


async def test_an_event_after_a_quiet_spell_arrives_at_once(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    """The long-poll hands over the first event as it arrives, not when the timeout ends,
    and the events after it come with the next fetch, none lost or repeated."""
    nc, js = nats_connection
    pull = await puller(nc, js)
    fetch = asyncio.create_task(pull.fetch(100, timeout=5.0))
    await asyncio.sleep(0.2)
    start = time.monotonic()
    await publish(js, 1)
    first = await fetch
    assert time.monotonic() - start < 1.0
    await publish(js, 5, start=1)
    got = list(first)
    while len(got) < 6:
        got += await pull.fetch(100, timeout=2.0)
    assert [m.data for m in got] == [str(i).encode() for i in range(6)]


async def test_a_reconnect_ends_the_open_request_at_once(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    """A request open when the connection went was sent to a server that may be gone: it
    is not waited out (here 60 s plus patience), and the next fetch asks anew."""
    nc, js = nats_connection
    pull = await puller(nc, js)
    fetch = asyncio.create_task(pull.fetch(100, timeout=60.0))
    await asyncio.sleep(0.2)  # long-polling now
    pull.reconnected()
    async with asyncio.timeout(10):
        with pytest.raises(TimeoutError):
            await fetch  # ended, with nothing: the caller fetches again
    await publish(js, 1)
    assert [m.data for m in await pull.fetch(100, timeout=5.0)] == [b"0"]
