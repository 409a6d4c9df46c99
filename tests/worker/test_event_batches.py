"""A running worker's events on EVENTS, read directly (no store): the outcomes of tasks
finishing together share messages, a lone task's outcome goes at once, each task's events
keep their order, and a message JetStream did not take is sent again under the same id
while its task stays unacknowledged."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from conveyor import jetstream, messages, subjects
from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.config import CommonSettings
from conveyor.context import TaskContext
from conveyor.ids import new_task_id
from conveyor.registry import Registry, TaskType
from tests.conftest import NatsServer, System
from tests.support.nats_client import jetstream as jetstream_of
from tests.worker.test_events import stored

TOGETHER = 60


class Barrier:
    """Holds every task until ``TOGETHER`` of them run, so they finish together."""

    arrived = 0
    all_in = asyncio.Event()


async def together(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    await ctx.progress(1, 2, "half")
    Barrier.arrived += 1
    if Barrier.arrived >= TOGETHER:
        Barrier.all_in.set()
    await Barrier.all_in.wait()
    return {"n": payload["n"]}


async def alone(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    return {"n": payload["n"]}


def registry() -> Registry:
    Barrier.arrived, Barrier.all_in = 0, asyncio.Event()
    handlers = Registry()
    handlers.register(TaskType(name="together", handler=together))
    handlers.register(TaskType(name="alone", handler=alone))
    return handlers


async def submit(js: JetStreamContext, task_type: str, count: int) -> list[str]:
    """Puts ``count`` tasks on TASKS as the gateway would; returns their ids."""
    ids = []
    for n in range(count):
        task = tasks_pb2.Task(
            id=new_task_id(), type=task_type, priority=tasks_pb2.TASK_PRIORITY_NORMAL
        )
        custom = tasks_pb2.CustomTaskInput(type=task_type, json=json.dumps({"n": n}))
        policy = events_pb2.RetryPolicy()
        message = messages.task_message(task, tasks_pb2.TaskInput(custom=custom), policy, 3)
        subject, data, headers = messages.queued_message(task, message)
        await js.publish(subject, data, headers=headers)
        ids.append(task.id)
    return ids


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def queued(js: JetStreamContext) -> int:
    """Tasks not acknowledged yet (TASKS is a work queue: an acked task leaves it)."""
    return int((await js.stream_info(subjects.STREAM_TASKS)).state.messages)


async def none_queued(js: JetStreamContext) -> bool:
    return await queued(js) == 0


async def all_events(js: JetStreamContext) -> list[events_pb2.TaskEvent]:
    return [e for headers, data in await stored(js) for e in messages.events_of(headers, data)]


def kind(event: events_pb2.TaskEvent) -> str:
    return str(event.WhichOneof("kind"))


async def test_tasks_finishing_together_share_messages_each_outcome_once_and_in_order(
    common: CommonSettings,
    tmp_path: Path,
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    _, js = nats_connection
    system = System(common, tmp_path)
    try:
        await system.start_worker(
            registry(), concurrency=TOGETHER, start_event_delay_seconds=0, types=["together"]
        )
        ids = await submit(js, "together", TOGETHER)
        await until(lambda: none_queued(js))
        found = await stored(js)
        events = await all_events(js)
    finally:
        await system.stop()

    assert len(found) < len(events)  # fewer messages than events: batched
    by_task: dict[str, list[str]] = {}
    for event in events:
        by_task.setdefault(event.task_id, []).append(kind(event))
    assert set(by_task) == set(ids)
    # Every task's events once each, in the order they happened.
    assert all(kinds == ["started", "progressed", "completed"] for kinds in by_task.values())
    results = {
        e.task_id: json.loads(e.completed.result.custom.json)["n"]
        for e in events
        if kind(e) == "completed"
    }
    assert sorted(results.values()) == list(range(TOGETHER))


async def test_a_lone_task_outcome_goes_at_once_in_one_message(
    common: CommonSettings,
    tmp_path: Path,
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    _, js = nats_connection
    system = System(common, tmp_path)
    try:
        await system.start_worker(registry(), start_event_delay_seconds=60, types=["alone"])
        [task_id] = await submit(js, "alone", 1)
        await until(lambda: none_queued(js))
        [(headers, data)] = await stored(js)
    finally:
        await system.stop()
    [event] = messages.events_of(headers, data)
    assert headers[subjects.HEADER_EVENT_COUNT] == "1"
    assert event.task_id == task_id and kind(event) == "completed"
    assert event.HasField("start_time")  # a short attempt: its start rides on the outcome


async def test_a_batch_not_taken_is_sent_again_under_its_id_and_acked_once_stored(
    common: CommonSettings,
    tmp_path: Path,
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    nc, js = nats_connection
    attempts: list[str] = []

    async def seen(msg: Msg) -> None:
        attempts.append((msg.headers or {})[subjects.HEADER_MSG_ID])

    # A core subscription sees every try, stored or not.
    await nc.subscribe(subjects.event_subject(subjects.WORKER, "alone"), cb=seen)
    system = System(common, tmp_path)
    try:
        await system.start_worker(registry(), start_event_delay_seconds=60, types=["alone"])
        await js.delete_stream(subjects.STREAM_EVENTS)  # JetStream takes no event now
        [task_id] = await submit(js, "alone", 1)

        async def tried_twice() -> bool:
            return len(attempts) >= 2

        await until(tried_twice)
        assert await queued(js) == 1  # not acked: its outcome is not stored

        await jetstream.ensure_streams(js, common)
        await until(lambda: none_queued(js))
        [(headers, data)] = await stored(js)
    finally:
        await system.stop()
    assert len(set(attempts)) == 1  # every try the same message id
    assert headers[subjects.HEADER_MSG_ID] == attempts[0]
    [event] = messages.events_of(headers, data)
    assert event.task_id == task_id and kind(event) == "completed"


async def test_a_worker_stopping_while_an_outcome_waits_sends_it_and_acks_the_task(
    common: CommonSettings,
    tmp_path: Path,
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    _, js = nats_connection
    system = System(common, tmp_path)
    worker = await system.start_worker(
        registry(), start_event_delay_seconds=60, shutdown_grace_seconds=30, types=["alone"]
    )
    try:
        await js.delete_stream(subjects.STREAM_EVENTS)
        [task_id] = await submit(js, "alone", 1)

        async def running() -> bool:
            return len(worker._in_flight) == 1

        await until(running)
        stopping = asyncio.create_task(worker.stop())
        await asyncio.sleep(0.3)  # the stop is under way, the outcome still not taken
        await jetstream.ensure_streams(js, common)
        await stopping
    finally:
        system.workers.clear()
        await system.stop()
    assert await queued(js) == 0
    [event] = await all_events(js)
    assert event.task_id == task_id and kind(event) == "completed"


class Gate:
    """Holds ``held`` tasks until ``release`` is set."""

    release = asyncio.Event()
    arrived = asyncio.Event()


async def held(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    Gate.arrived.set()
    await Gate.release.wait()
    return {"n": payload["n"]}


async def test_an_outcome_sent_while_nats_restarts_is_stored_once_before_the_ack(
    common: CommonSettings, tmp_path: Path, nats_server: NatsServer
) -> None:
    Gate.release, Gate.arrived = asyncio.Event(), asyncio.Event()
    handlers = Registry()
    handlers.register(TaskType(name="held", handler=held))
    system = System(common, tmp_path)
    try:
        await system.start_worker(handlers, start_event_delay_seconds=60, types=["held"])
        async with jetstream_of(nats_server.url) as js:
            [task_id] = await submit(js, "held", 1)
            await asyncio.wait_for(Gate.arrived.wait(), 30)
        nats_server.kill()  # file storage: the task and the stream outlive it
        Gate.release.set()  # the outcome is published while NATS is away
        await asyncio.sleep(0.5)
        nats_server.start()
        async with jetstream_of(nats_server.url) as js:
            await until(lambda: none_queued(js), timeout=60)
            events = await all_events(js)
    finally:
        await system.stop()
    [event] = events  # once, however many times it was sent
    assert event.task_id == task_id and kind(event) == "completed"
