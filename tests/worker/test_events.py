"""The worker's event publisher: events published together go as few messages, bounded
by count and bytes, each acknowledged before its publishes return; a publish that no
stream takes raises once the patience is spent."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from conveyor import messages, subjects
from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from worker.events import EventPublisher


async def stored(js: JetStreamContext) -> list[tuple[dict[str, str], bytes]]:
    """Every message on EVENTS, in order: headers and data."""
    state = (await js.stream_info(subjects.STREAM_EVENTS)).state
    if state.messages == 0:
        return []
    found = []
    for sequence in range(state.first_seq, state.last_seq + 1):
        msg = await js.get_msg(subjects.STREAM_EVENTS, sequence)
        found.append((dict(msg.headers or {}), msg.data or b""))
    return found


def completed(size: int) -> events_pb2.Completed:
    custom = tasks_pb2.CustomTaskResult(json='"' + "x" * size + '"')
    return events_pb2.Completed(result=tasks_pb2.TaskResult(custom=custom))


async def test_an_event_is_stored_before_publish_returns(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    nc, js = nats_connection
    publisher = EventPublisher(js, "w1", nc)
    message = events_pb2.TaskMessage(task_id="t1", type="greet")
    await publisher.publish(message, 1, started=events_pb2.Started())
    [(headers, data)] = await stored(js)
    [event] = messages.events_of(headers, data)
    assert event.task_id == "t1" and event.worker_id == "w1" and event.HasField("started")
    assert event.time.seconds > 0
    assert headers[subjects.HEADER_MSG_ID].startswith("w1:")


async def test_events_published_together_share_messages_one_per_type(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    nc, js = nats_connection
    publisher = EventPublisher(js, "w1", nc)
    tasks = [events_pb2.TaskMessage(task_id=f"t{i}", type=("a", "b")[i % 2]) for i in range(40)]
    await asyncio.gather(*(publisher.publish(t, 1, completed=completed(3)) for t in tasks))
    found = await stored(js)
    events = [e for headers, data in found for e in messages.events_of(headers, data)]
    assert sorted(e.task_id for e in events) == sorted(t.task_id for t in tasks)
    assert len(found) < len(events)
    for headers, data in found:
        kinds = {e.type for e in messages.events_of(headers, data)}
        assert len(kinds) == 1  # one type per message, on its type's subject
    assert len({headers[subjects.HEADER_MSG_ID] for headers, _ in found}) == len(found)


async def test_a_message_is_bounded_by_count_and_bytes_and_a_big_event_goes_alone(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    nc, js = nats_connection
    publisher = EventPublisher(js, "w1", nc, max_events=3, max_bytes=4096)
    tasks = [events_pb2.TaskMessage(task_id=f"t{i}", type="big") for i in range(10)]
    sizes = [1500] * 9 + [6000]  # two fit in 4096 bytes, three do not; the last fits nowhere
    first = events_pb2.TaskMessage(task_id="first", type="big")
    await publisher.publish(first, 1, started=events_pb2.Started())  # the rest queue behind
    await asyncio.gather(
        *(
            publisher.publish(t, 1, completed=completed(n))
            for t, n in zip(tasks, sizes, strict=True)
        )
    )
    found = await stored(js)
    batches = [messages.events_of(headers, data) for headers, data in found]
    assert sorted(e.task_id for b in batches for e in b) == sorted(
        [t.task_id for t in tasks] + ["first"]
    )
    for (_, data), batch in zip(found, batches, strict=True):
        assert len(batch) <= 3
        assert len(data) <= 4096 or len(batch) == 1
    assert any(
        len(data) > 6000 and len(b) == 1 for (_, data), b in zip(found, batches, strict=True)
    )
    assert len(found) >= 1 + 5  # the start, four pairs of 1500 bytes at most, the big one


async def test_a_publish_no_stream_takes_raises_after_the_patience(
    nats_connection: tuple[NATS, JetStreamContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    nc, js = nats_connection
    monkeypatch.setattr(subjects, "event_subject", lambda publisher, task_type: "nowhere.at.all")
    publisher = EventPublisher(js, "w1", nc, patience=0.3)
    message = events_pb2.TaskMessage(task_id="t2", type="greet")
    with pytest.raises(NoRespondersError):
        await publisher.publish(message, 1, started=events_pb2.Started())
    await publisher.close()  # the batch, given up by its only publisher, is dropped


async def test_an_event_carries_its_trace_context_only_when_sampled(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    nc, js = nats_connection
    publisher = EventPublisher(js, "w1", nc)
    for task_id, flags in (("sampled", TraceFlags(1)), ("unsampled", TraceFlags(0))):
        span = NonRecordingSpan(SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=flags))
        with trace.use_span(span):
            message = events_pb2.TaskMessage(task_id=task_id, type="greet")
            await publisher.publish(message, 1, started=events_pb2.Started())
    events = {e.task_id: e for h, d in await stored(js) for e in messages.events_of(h, d)}
    assert events["sampled"].traceparent == f"00-{0xABC:032x}-{0xDEF:016x}-01"
    assert events["unsampled"].traceparent == ""


async def test_an_event_whose_publish_was_given_up_before_its_exchange_is_not_sent(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    nc, js = nats_connection
    publisher = EventPublisher(js, "w1", nc)
    gone = events_pb2.TaskMessage(task_id="gone", type="greet")
    call = asyncio.create_task(publisher.publish(gone, 1, completed=completed(3)))
    await asyncio.sleep(0)  # the publish waits its loop turn before sending
    call.cancel()
    await asyncio.gather(call, return_exceptions=True)
    kept = events_pb2.TaskMessage(task_id="kept", type="greet")
    await publisher.publish(kept, 1, completed=completed(3))
    await publisher.close()
    found = await stored(js)
    assert [e.task_id for h, d in found for e in messages.events_of(h, d)] == ["kept"]
