"""The ``started`` event of an attempt: left out of a short attempt (its outcome carries
the start), published after the delay for a long one, and before any progress.

Unit tests at the runner's own seams: a recording publisher, a message stand-in and a
handler call; what reaches a real store from such events is tested in tests/store."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.registry import Registry, TaskType
from worker.events import EventPublisher
from worker.middleware import Job
from worker.runner import Runner

DELAY = 0.2


class RecordingPublisher(EventPublisher):
    """Keeps each published event instead of sending it; can be told to fail starts."""

    def __init__(self, fail_starts: bool = False) -> None:
        self.worker_id = "w1"
        self.events: list[tuple[str, Timestamp | None, Timestamp | None]] = []
        self._fail_starts = fail_starts

    async def publish(
        self,
        message: events_pb2.TaskMessage,
        attempt: int,
        *,
        time: Timestamp | None = None,
        start_time: Timestamp | None = None,
        **kind: Any,
    ) -> None:
        [name] = kind
        if name == "started" and self._fail_starts:
            raise TimeoutError("nats is away")
        self.events.append((name, time, start_time))


class Msg:
    """The parts of a delivered message the runner uses."""

    def __init__(self) -> None:
        message = events_pb2.TaskMessage(task_id="t1", type="quick", max_attempts=3)
        self.data = message.SerializeToString()
        self.subject = "conveyor.tasks.quick.normal.t1"
        self.headers: dict[str, str] = {}
        self.metadata = SimpleNamespace(num_delivered=1, sequence=SimpleNamespace(stream=7))
        self.outcome = ""

    async def ack(self) -> None:
        self.outcome = "ack"

    async def nak(self, delay: float | None = None) -> None:
        self.outcome = "nak"

    async def term(self) -> None:
        self.outcome = "term"

    async def in_progress(self) -> None:
        pass


class NotCancelled:
    async def is_cancelled(self, task_id: str) -> bool:
        return False


async def never_called(ctx: object, payload: object) -> None:
    """The registered handler; the runner's ``call`` (the tests' own) runs instead."""


def runner(publisher: EventPublisher, call: Any, delay: float = DELAY) -> Runner:
    registry = Registry()
    registry.register(TaskType(name="quick", handler=never_called))
    return Runner(registry, publisher, NotCancelled(), call, delay)  # type: ignore[arg-type]


async def returns_at_once(job: Job) -> tasks_pb2.TaskResult:
    return tasks_pb2.TaskResult()


async def test_a_short_attempt_publishes_one_event_carrying_its_start() -> None:
    publisher, msg = RecordingPublisher(), Msg()
    await runner(publisher, returns_at_once).handle(msg)  # type: ignore[arg-type]

    [(name, _, start_time)] = publisher.events
    assert name == "completed" and start_time is not None
    assert msg.outcome == "ack"


async def test_a_long_attempt_publishes_its_start_at_the_time_it_began() -> None:
    async def slow(job: Job) -> tasks_pb2.TaskResult:
        await asyncio.sleep(DELAY * 2)
        return tasks_pb2.TaskResult()

    publisher, msg = RecordingPublisher(), Msg()
    before = Timestamp()
    before.GetCurrentTime()
    await runner(publisher, slow).handle(msg)  # type: ignore[arg-type]

    [(first, start, _), (second, _, start_time)] = publisher.events
    assert (first, second) == ("started", "completed")
    assert start_time is None  # the store knows the start already
    assert start is not None
    # Stamped when the attempt began, not when the delayed publish went out.
    assert (start.ToNanoseconds() - before.ToNanoseconds()) / 1e9 < DELAY / 2


async def test_progress_is_published_after_the_start() -> None:
    async def reports(job: Job) -> tasks_pb2.TaskResult:
        await job.ctx.progress(1, 2, "half")
        return tasks_pb2.TaskResult()

    publisher, msg = RecordingPublisher(), Msg()
    await runner(publisher, reports).handle(msg)  # type: ignore[arg-type]

    assert [(name, start is not None) for name, _, start in publisher.events] == [
        ("started", False),
        ("progressed", False),
        ("completed", False),
    ]


async def test_a_failure_carries_the_start_of_its_attempt() -> None:
    async def breaks(job: Job) -> tasks_pb2.TaskResult:
        raise ValueError("bad input")

    publisher, msg = RecordingPublisher(), Msg()
    await runner(publisher, breaks).handle(msg)  # type: ignore[arg-type]

    [(name, _, start_time)] = publisher.events
    assert name == "retrying" and start_time is not None
    assert msg.outcome == "nak"


async def test_a_start_that_could_not_be_recorded_goes_with_the_outcome() -> None:

    async def slow(job: Job) -> tasks_pb2.TaskResult:
        await asyncio.sleep(DELAY * 4)
        return tasks_pb2.TaskResult()

    publisher, msg = RecordingPublisher(fail_starts=True), Msg()
    await runner(publisher, slow).handle(msg)  # type: ignore[arg-type]

    [(name, _, start_time)] = publisher.events
    assert name == "completed" and start_time is not None
    assert msg.outcome == "ack"


async def test_no_delay_publishes_the_start_before_the_handler_runs() -> None:
    seen: list[int] = []
    publisher, msg = RecordingPublisher(), Msg()

    async def counts(job: Job) -> tasks_pb2.TaskResult:
        seen.append(len(publisher.events))
        return tasks_pb2.TaskResult()

    await runner(publisher, counts, delay=0).handle(msg)  # type: ignore[arg-type]

    assert seen == [1]
    assert [(name, start is not None) for name, _, start in publisher.events] == [
        ("started", False),
        ("completed", False),
    ]
