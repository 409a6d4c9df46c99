"""The gateway's acknowledged publish: stored before publish returns, a repeated message
id is stored once, an error answer or a subject no stream takes raises, and a publish
that gets no answer times out."""

from __future__ import annotations

import pytest
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.errors import APIError

from conveyor import subjects
from conveyor.publish import AckedPublisher


async def test_a_publish_is_stored_once_before_it_returns(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    nc, js = nats_connection
    publisher = AckedPublisher(nc, 5.0)
    subject = subjects.event_subject(subjects.WORKER, "greet")
    before = (await js.stream_info(subjects.STREAM_EVENTS)).state.messages
    headers = {subjects.HEADER_MSG_ID: "gateway-publish-test:1"}
    await publisher.publish(subject, b"first", headers)
    await publisher.publish(subject, b"again", dict(headers))  # a repeat: deduplicated
    assert (await js.stream_info(subjects.STREAM_EVENTS)).state.messages == before + 1
    stored = await js.get_last_msg(subjects.STREAM_EVENTS, subject)
    assert stored.data == b"first"


async def test_refusals_raise(nats_connection: tuple[NATS, JetStreamContext]) -> None:
    nc, _ = nats_connection
    publisher = AckedPublisher(nc, 5.0)
    with pytest.raises(NoRespondersError):
        await publisher.publish("nowhere.at.all", b"x", {})
    # The stream refuses a message that expects another stream: an error answer.
    with pytest.raises(APIError):
        await publisher.publish(
            subjects.event_subject(subjects.WORKER, "greet"),
            b"x",
            {"Nats-Expected-Stream": "NOT_THIS_ONE"},
        )


async def test_no_answer_times_out(nats_connection: tuple[NATS, JetStreamContext]) -> None:
    nc, _ = nats_connection
    sub = await nc.subscribe("gateway.publish.test.silent")  # takes it, never answers
    publisher = AckedPublisher(nc, 0.2)
    with pytest.raises(TimeoutError):
        await publisher.publish("gateway.publish.test.silent", b"x", {})
    await sub.unsubscribe()


async def test_of_messages_published_together_only_the_unanswered_one_times_out(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    nc, js = nats_connection
    sub = await nc.subscribe("gateway.publish.test.quiet")  # takes it, never answers
    publisher = AckedPublisher(nc, 0.3)
    event = subjects.event_subject(subjects.WORKER, "greet")
    stored, silent = await publisher.publish_each(
        [
            (event, b"answered", {subjects.HEADER_MSG_ID: "publish-each-timeout:event"}),
            ("gateway.publish.test.quiet", b"x", {}),
        ]
    )
    assert stored is None
    assert isinstance(silent, TimeoutError)
    assert (await js.get_last_msg(subjects.STREAM_EVENTS, event)).data == b"answered"
    await sub.unsubscribe()


async def test_messages_published_together_are_all_stored_before_it_returns(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    nc, js = nats_connection
    publisher = AckedPublisher(nc, 5.0)
    event, task = (
        subjects.event_subject(subjects.WORKER, "greet"),
        subjects.task_subject("greet", 2, "t-42"),
    )
    await publisher.publish_all(
        [
            (event, b"submitted", {subjects.HEADER_MSG_ID: "publish-all-test:event"}),
            (task, b"task", {subjects.HEADER_MSG_ID: "publish-all-test:task"}),
        ]
    )
    assert (await js.get_last_msg(subjects.STREAM_EVENTS, event)).data == b"submitted"
    assert (await js.get_last_msg(subjects.STREAM_TASKS, task)).data == b"task"


async def test_one_refused_message_of_several_raises(
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    nc, js = nats_connection
    publisher = AckedPublisher(nc, 5.0)
    event = subjects.event_subject(subjects.WORKER, "greet")
    with pytest.raises(NoRespondersError):
        await publisher.publish_all([(event, b"fine", {}), ("nowhere.at.all", b"x", {})])
    # The other message was still stored: a caller retrying with the same ids is deduplicated.
    assert (await js.get_last_msg(subjects.STREAM_EVENTS, event)).data == b"fine"
