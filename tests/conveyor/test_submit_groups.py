"""Group commit of concurrent submits (conveyor.intake.groups) against a real nats-server:
submits arriving while an exchange is in flight share one EVENTS message, every caller
is answered with its own messages' outcome, and a lone submit goes out as it always did."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.js import JetStreamContext

from conveyor import messages, subjects
from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.ids import new_task_id
from conveyor.intake.groups import SubmitGroups
from conveyor.tasks import timestamp


def prepared(task_type: str = "greet") -> tuple[events_pb2.TaskEvent, messages.Message]:
    task = tasks_pb2.Task(
        id=new_task_id(),
        type=task_type,
        priority=tasks_pb2.TASK_PRIORITY_NORMAL,
        create_time=timestamp(),
    )
    message = messages.task_message(task, tasks_pb2.TaskInput(), events_pb2.RetryPolicy(), 3)
    return (
        messages.submitted_event(task, message, events_pb2.RetryPolicy()),
        messages.queued_message(task, message),
    )


async def heard_events(nc: NATS) -> tuple[list[Msg], object]:
    heard: list[Msg] = []

    async def hear(msg: Msg) -> None:
        heard.append(msg)

    sub = await nc.subscribe(f"{subjects.EVENTS_PREFIX}.gateway.>", cb=hear)
    await nc.flush()
    return heard, sub


async def test_submits_arriving_together_share_one_message(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    nc, js = nats_connection
    heard, _ = await heard_events(nc)
    groups = SubmitGroups(messages.publisher(js, nc), subjects.GATEWAY)
    submits = [prepared() for _ in range(20)]
    await asyncio.gather(*(groups.publish(event, queued) for event, queued in submits))
    await nc.flush()
    [msg] = heard
    carried = [e.task_id for e in messages.events_of(msg.headers, msg.data)]
    assert carried == [event.task_id for event, _ in submits]
    tasks = await js.stream_info(subjects.STREAM_TASKS)
    assert tasks.state.messages == 20


async def test_submits_during_an_exchange_share_the_next_message(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    nc, js = nats_connection
    heard, _ = await heard_events(nc)
    groups = SubmitGroups(messages.publisher(js, nc), subjects.GATEWAY)
    submits = [prepared() for _ in range(20)]
    first = asyncio.create_task(groups.publish(*submits[0]))
    for _ in range(3):  # the first submit's exchange is sent and awaits its answer
        await asyncio.sleep(0)
    await asyncio.gather(first, *(groups.publish(event, queued) for event, queued in submits[1:]))
    await nc.flush()
    # The first went out alone; the 19 that came while it was in flight, together.
    assert [len(messages.events_of(m.headers, m.data)) for m in heard] == [1, 19]
    carried = [e.task_id for m in heard for e in messages.events_of(m.headers, m.data)]
    assert carried == [event.task_id for event, _ in submits]
    tasks = await js.stream_info(subjects.STREAM_TASKS)
    assert tasks.state.messages == 20


async def test_each_caller_gets_its_own_outcome(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    nc, js = nats_connection
    groups = SubmitGroups(messages.publisher(js, nc, timeout=2.0), subjects.GATEWAY)
    submits = [prepared() for _ in range(6)]
    # The fourth task's message goes where no stream listens: only its caller fails.
    event, (_, data, headers) = submits[3]
    submits[3] = (event, ("conveyor.nowhere", data, headers))
    results = await asyncio.gather(
        *(groups.publish(event, queued) for event, queued in submits), return_exceptions=True
    )
    assert [type(r) for r in results] == [type(None)] * 3 + [NoRespondersError] + [type(None)] * 2
    tasks = await js.stream_info(subjects.STREAM_TASKS)
    assert tasks.state.messages == 5


async def test_a_lone_submit_keeps_the_lone_event_format(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    nc, js = nats_connection
    heard, _ = await heard_events(nc)
    groups = SubmitGroups(messages.publisher(js, nc), subjects.GATEWAY)
    event, queued = prepared()
    await groups.publish(event, queued)
    await nc.flush()
    [msg] = heard
    assert msg.headers is not None
    assert subjects.HEADER_EVENT_COUNT not in msg.headers
    assert msg.headers[subjects.HEADER_MSG_ID] == f"{event.task_id}:submitted"
    assert events_pb2.TaskEvent.FromString(msg.data) == event


async def test_a_group_of_two_types_is_a_message_per_type(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    nc, js = nats_connection
    heard, _ = await heard_events(nc)
    groups = SubmitGroups(messages.publisher(js, nc), subjects.GATEWAY)
    submits = [prepared(("greet", "shout")[i % 2]) for i in range(9)]
    await asyncio.gather(*(groups.publish(event, queued) for event, queued in submits))
    await nc.flush()
    assert sorted((m.subject, len(messages.events_of(m.headers, m.data))) for m in heard) == [
        ("conveyor.events.gateway.greet", 5),
        ("conveyor.events.gateway.shout", 4),
    ]


async def test_a_submit_whose_caller_went_away_before_its_exchange_is_not_sent(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    nc, js = nats_connection
    groups = SubmitGroups(messages.publisher(js, nc), subjects.GATEWAY)
    gone, kept = prepared(), prepared()
    call = asyncio.create_task(groups.publish(*gone))
    await asyncio.sleep(0)  # the call waits its loop turn before sending
    call.cancel()
    await asyncio.gather(call, return_exceptions=True)
    await groups.publish(*kept)  # the group is idle again, and sends the next one
    tasks = await js.stream_info(subjects.STREAM_TASKS)
    assert tasks.state.messages == 1
    stored = await js.get_msg(subjects.STREAM_TASKS, tasks.state.last_seq)
    assert stored.subject == kept[1][0]
