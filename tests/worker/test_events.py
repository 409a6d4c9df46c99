"""The worker's event publisher: each event is stored (and acknowledged) before publish
returns, and a publish that no stream takes raises (the runner then retries it)."""

from __future__ import annotations

import pytest
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.js import JetStreamContext

from conveyor import subjects
from conveyor.api.events.v1 import events_pb2
from worker.events import EventPublisher


async def test_an_event_is_stored_once_before_publish_returns(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    nc, js = nats_connection
    publisher = EventPublisher(js, "w1", nc)
    message = events_pb2.TaskMessage(task_id="t1", type="greet")
    before = (await js.stream_info(subjects.STREAM_EVENTS)).state.messages
    await publisher.publish(message, 1, "started", started=events_pb2.Started())
    await publisher.publish(message, 1, "started", started=events_pb2.Started())  # a repeat
    info = await js.stream_info(subjects.STREAM_EVENTS)
    assert info.state.messages == before + 1
    stored = await js.get_last_msg(
        subjects.STREAM_EVENTS, subjects.event_subject(subjects.WORKER, "greet")
    )
    event = events_pb2.TaskEvent.FromString(stored.data or b"")
    assert event.task_id == "t1" and event.worker_id == "w1" and event.HasField("started")
    assert event.time.seconds > 0


async def test_a_publish_no_stream_takes_raises(
    nats_connection: tuple[NATS, JetStreamContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    nc, js = nats_connection
    monkeypatch.setattr(subjects, "event_subject", lambda publisher, task_type: "nowhere.at.all")
    publisher = EventPublisher(js, "w1", nc)
    message = events_pb2.TaskMessage(task_id="t2", type="greet")
    with pytest.raises(NoRespondersError):
        await publisher.publish(message, 1, "started", started=events_pb2.Started())
