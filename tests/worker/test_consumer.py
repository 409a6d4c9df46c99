"""The fetch loop against a real JetStream: priorities are asked without waiting on empty
ones, and the worker never holds more messages than it has slots for."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from conveyor import jetstream, subjects
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.config import CommonSettings
from worker import consumer
from worker.consumer import Slots, TypeConsumer
from worker.flow import Flow

TYPE = "probe"
PRIORITY_NUMBERS = {
    "high": tasks_pb2.TASK_PRIORITY_HIGH,
    "normal": tasks_pb2.TASK_PRIORITY_NORMAL,
    "low": tasks_pb2.TASK_PRIORITY_LOW,
}


@dataclass
class Harness:
    nc: NATS
    js: JetStreamContext
    slots: Slots
    flow: Flow
    started: list[str] = field(default_factory=list)
    most_in_flight: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    running: set[asyncio.Task[None]] = field(default_factory=set)

    def dispatch(self, msg: Msg) -> asyncio.Task[None]:
        self.most_in_flight = max(self.most_in_flight, self.slots.in_flight)
        self.started.append(msg.subject.split(".")[3])
        task = asyncio.create_task(self._run(msg))
        self.running.add(task)
        task.add_done_callback(self.running.discard)
        return task

    async def _run(self, msg: Msg) -> None:
        await self.release.wait()  # the consumer gives the slot back when this ends
        await msg.ack()

    async def queue(self, priority: str, count: int) -> None:
        for i in range(count):
            number = PRIORITY_NUMBERS[priority]
            await self.js.publish(subjects.task_subject(TYPE, number, f"{priority}{i}"), b"")


@pytest.fixture
async def harness(common: CommonSettings) -> AsyncIterator[Harness]:
    nc, js = await jetstream.setup(common, "consumer-test")
    buckets = await jetstream.ensure_buckets(js, common)
    flow = Flow(buckets[subjects.KV_QUEUES], buckets[subjects.KV_PERMITS], "w", 30.0)
    await flow.start()
    h = Harness(nc, js, Slots(4), flow)
    yield h
    h.release.set()
    await asyncio.gather(*h.running, return_exceptions=True)
    await flow.stop()
    await jetstream.close(nc)


async def consume(h: Harness, until: int) -> None:
    c = TypeConsumer(h.nc, h.js, TYPE, 30.0, h.slots, h.dispatch, h.flow)
    await c.declare()
    stopping = asyncio.Event()
    loop = asyncio.create_task(c.run(stopping))
    try:
        async with asyncio.timeout(60):
            while len(h.started) < until:
                await asyncio.sleep(0.01)
    finally:
        stopping.set()
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


async def test_work_of_one_priority_is_fetched_without_long_polling_the_empty_ones(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long-poll of an empty priority would hold the loop for a minute: the test's
    # own limit. Only the lowest priority has work, so every round meets two empty ones.
    monkeypatch.setattr(consumer, "IDLE_WAIT", 600.0)
    await harness.queue("low", 40)
    harness.release.set()
    await consume(harness, until=40)
    assert harness.started == ["low"] * 40


async def test_never_more_messages_than_free_slots(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(random, "random", lambda: 0.99)  # rounds start with high
    await harness.queue("normal", 20)
    await harness.queue("high", 5)
    task = asyncio.create_task(consume(harness, until=25))
    async with asyncio.timeout(30):
        while len(harness.started) < 4:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)  # every slot is busy: nothing more may be fetched meanwhile
    assert len(harness.started) == 4
    info = await harness.js.consumer_info(
        subjects.STREAM_TASKS, subjects.worker_consumer(TYPE, "normal")
    )
    high = await harness.js.consumer_info(
        subjects.STREAM_TASKS, subjects.worker_consumer(TYPE, "high")
    )
    assert info.num_ack_pending + high.num_ack_pending == 4
    harness.release.set()
    await task
    assert harness.most_in_flight <= 4
    assert harness.started[:4] == ["high"] * 4  # high first
    assert sorted(harness.started) == sorted(["high"] * 5 + ["normal"] * 20)


async def test_a_round_that_empties_the_queue_waits_before_the_next_one(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tasks that come one at a time are fetched together after the pause, not one pull
    # request each. The pause is made long so that the test sees it on any machine.
    monkeypatch.setattr(consumer, "REFILL_PAUSE", 2.0)
    monkeypatch.setattr(random, "random", lambda: 0.99)  # rounds start with high
    requests: list[bytes] = []

    async def spy(msg: Msg) -> None:
        if msg.subject.endswith(subjects.worker_consumer(TYPE, "normal")):
            requests.append(msg.data)

    await harness.nc.subscribe(f"$JS.API.CONSUMER.MSG.NEXT.{subjects.STREAM_TASKS}.>", cb=spy)
    harness.release.set()
    task = asyncio.create_task(consume(harness, until=4))
    async with asyncio.timeout(30):
        while not requests:  # idle: the loop long-polls
            await asyncio.sleep(0.01)
    await harness.queue("normal", 1)
    async with asyncio.timeout(30):
        while len(harness.started) < 1:
            await asyncio.sleep(0.01)
    sent = len(requests)
    await harness.queue("normal", 3)
    await asyncio.sleep(0.5)
    assert len(harness.started) == 1, "fetched during the pause"
    assert len(requests) == sent, "asked during the pause"
    await task
    assert len(requests) == sent + 1
    assert json.loads(requests[-1]) == {"batch": 4, "no_wait": True}  # all three in one


async def test_a_backlog_fills_every_free_slot_without_pausing(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pause would hold the loop past the test's one-minute limit.
    monkeypatch.setattr(consumer, "REFILL_PAUSE", 600.0)
    monkeypatch.setattr(random, "random", lambda: 0.99)
    await harness.queue("normal", 30)
    harness.release.set()
    await consume(harness, until=30)
    assert harness.started == ["normal"] * 30
