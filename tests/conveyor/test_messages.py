"""The messages every service puts on JetStream: a repeat has the same Nats-Msg-Id (and is
stored once), a new message a new one, and the publisher reports where it was stored."""

from __future__ import annotations

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from conveyor import messages, subjects
from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2

TASK_ID = "0123456789abcdefghjkmnpqrs"


def msg_id(message: messages.Message) -> str:
    return message[2][subjects.HEADER_MSG_ID]


def task(attempt: int = 0, version: int = 1) -> tasks_pb2.Task:
    return tasks_pb2.Task(
        id=TASK_ID,
        type="greet",
        priority=tasks_pb2.TASK_PRIORITY_NORMAL,
        attempt=attempt,
        version=version,
    )


def test_each_redrive_is_a_new_message_even_at_the_same_offset() -> None:
    first = task(attempt=0, version=3)  # cancelled before it started: offset 0
    again = task(attempt=0, version=6)  # and again, later
    message = messages.task_message(first, tasks_pb2.TaskInput(), events_pb2.RetryPolicy(), 3)
    ids = {
        msg_id(messages.queued_message(first, message)),
        msg_id(messages.rerun_message(first, message)),
        msg_id(messages.rerun_message(again, message)),
        msg_id(messages.redriven(first, 3)),
        msg_id(messages.redriven(again, 3)),
    }
    assert len(ids) == 5
    assert msg_id(messages.redriven(first, 3)) == msg_id(messages.redriven(task(version=3), 5))


def test_worker_batches_are_named_by_their_publisher_and_number() -> None:
    message = events_pb2.TaskMessage(task_id=TASK_ID, type="greet")
    event = messages.worker_event(message, 1, "w2", started=events_pb2.Started())
    assert (event.attempt, event.worker_id, event.HasField("started")) == (1, "w2", True)
    assert event.traceparent == ""  # no sampled trace here
    ids = {messages.worker_batch_id(p, n) for p in ("w1:aa", "w1:bb") for n in (1, 2)}
    assert len(ids) == 4


def test_a_task_message_carries_what_a_worker_needs() -> None:
    queued = task(attempt=2, version=4)
    queued.timeout.seconds = 9
    retry = events_pb2.RetryPolicy(initial_delay={"seconds": 1})
    message = messages.task_message(queued, tasks_pb2.TaskInput(), retry, 3, attempt_offset=2)
    assert (message.task_id, message.type, message.priority) == (TASK_ID, "greet", 2)
    assert (message.max_attempts, message.attempt_offset, message.timeout.seconds) == (3, 2, 9)
    assert message.retry_policy == retry


async def test_a_published_event_reports_its_sequence_and_a_repeat_the_same(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    nc, js = nats_connection
    publisher = messages.publisher(js, nc)
    cancel = messages.cancel_requested(task(version=7))
    sequence = await publisher.publish_sequence(*cancel)
    assert await publisher.publish_sequence(*cancel) == sequence
    stored = await js.get_msg(subjects.STREAM_EVENTS, sequence)
    assert events_pb2.TaskEvent.FromString(stored.data or b"").HasField("cancel_requested")


async def test_a_publisher_made_from_the_context_alone_publishes_on_its_connection(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    _, js = nats_connection
    lost = messages.lost(task(attempt=0, version=2), "in no stream")
    sequence = await messages.publisher(js).publish_sequence(*lost)
    stored = await js.get_msg(subjects.STREAM_EVENTS, sequence)
    event = events_pb2.TaskEvent.FromString(stored.data or b"")
    assert (event.attempt, event.worker_id, event.failed.error.type) == (1, "scheduler", "lost")


def submitted(task_id: str, task_type: str = "greet", text: str = "") -> events_pb2.TaskEvent:
    queued = tasks_pb2.Task(id=task_id, type=task_type)
    task_input = tasks_pb2.TaskInput(custom=tasks_pb2.CustomTaskInput(json=f'"{text}"'))
    message = messages.task_message(queued, task_input, events_pb2.RetryPolicy(), 3)
    return messages.submitted_event(queued, message, events_pb2.RetryPolicy())


def test_submitted_events_of_many_tasks_share_one_message_per_type() -> None:
    events = [submitted(f"{TASK_ID[:-2]}{i:02d}", "greet" if i % 3 else "shout") for i in range(9)]
    packed = [m for m, _ in messages.submitted_batches(subjects.GATEWAY, events, 1 << 20)]
    assert [subject for subject, _, _ in packed] == [
        "conveyor.events.gateway.shout",
        "conveyor.events.gateway.greet",
    ]
    decoded = [messages.events_of(h, data) for _, data, h in packed]
    assert [[e.task_id for e in batch] for batch in decoded] == [
        [e.task_id for e in events if e.type == task_type] for task_type in ("shout", "greet")
    ]
    # The same tasks make the same message id (a retried submit is dropped as a repeat).
    again = [m for m, _ in messages.submitted_batches(subjects.GATEWAY, events, 1 << 20)]
    assert [msg_id(m) for m in again] == [msg_id(m) for m in packed]
    assert len({msg_id(m) for m in packed}) == 2


def test_a_batch_is_split_by_bytes_and_an_event_alone_keeps_the_lone_format() -> None:
    big = "x" * 3000
    events = [submitted(f"{TASK_ID[:-2]}{i:02d}", text=big) for i in range(5)]
    packed = [m for m, _ in messages.submitted_batches(subjects.GATEWAY, events, 7000)]
    # Two events fit under 7,000 bytes, the fifth is alone.
    assert [len(messages.events_of(h, data)) for _, data, h in packed] == [2, 2, 1]
    assert subjects.HEADER_EVENT_COUNT not in packed[-1][2]
    assert msg_id(packed[-1]) == f"{events[-1].task_id}:submitted"
    assert all(len(data) <= 7000 for _, data, _ in packed)
