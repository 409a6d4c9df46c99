"""``SubmitTasks`` sends the ``submitted`` events of its tasks as few EVENTS messages (a
``TaskEvents`` batch per task type), and the store records every task of them once."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from conveyor import messages, subjects
from conveyor.api.tasks.v1 import tasks_pb2 as S
from tests.conftest import System
from tests.support.helpers import wait_terminal

pytestmark = pytest.mark.integration


def text_task(i: int, key: str = "") -> S.SubmitTaskRequest:
    return S.SubmitTaskRequest(
        text_processing=S.TextProcessingInput(text=f"task {i}: the cat sat on the mat"),
        options=S.TaskOptions(idempotency_key=key),
    )


def summary_task(i: int) -> S.SubmitTaskRequest:
    return S.SubmitTaskRequest(
        ai_summarization=S.AiSummarizationInput(text=f"One {i}. Two things. Three more things.")
    )


async def test_a_batch_of_two_types_is_two_messages_and_every_task_completes(
    system: System, nats_connection: tuple[NATS, JetStreamContext]
) -> None:
    await system.start()
    nc, _ = nats_connection
    heard: list[Msg] = []

    async def hear(msg: Msg) -> None:
        heard.append(msg)

    sub = await nc.subscribe(f"{subjects.EVENTS_PREFIX}.gateway.>", cb=hear)
    await nc.flush()
    requests = [text_task(i) if i % 4 else summary_task(i) for i in range(120)]
    response = await system.stub.SubmitTasks(S.SubmitTasksRequest(requests=requests))
    assert len(response.tasks) == 120
    await nc.flush()
    await sub.unsubscribe()

    assert sorted(m.subject for m in heard) == [
        "conveyor.events.gateway.ai_summarization",
        "conveyor.events.gateway.text_processing",
    ]
    carried = [e.task_id for m in heard for e in messages.events_of(m.headers, m.data)]
    assert sorted(carried) == sorted(t.id for t in response.tasks)

    done = await asyncio.gather(*(wait_terminal(system.stub, t.id) for t in response.tasks))
    assert {t.state for t in done} == {S.TASK_STATE_COMPLETED}
    assert done[1].result.text_processing.unique_words == 7  # task 1 the cat sat on mat
    # Submitted, started, completed: one version each.
    assert {t.version for t in done} == {3}


async def test_a_retried_batch_with_idempotency_keys_records_each_task_once(
    system: System,
) -> None:
    await system.start()
    requests = [text_task(i, key=f"order-{i}") for i in range(40)]
    first = await system.stub.SubmitTasks(S.SubmitTasksRequest(requests=requests))
    again = await system.stub.SubmitTasks(S.SubmitTasksRequest(requests=requests))
    assert [t.id for t in again.tasks] == [t.id for t in first.tasks]
    for task in first.tasks:
        await wait_terminal(system.stub, task.id)
    listed = await system.stub.ListTasks(S.ListTasksRequest(type="text_processing", page_size=100))
    assert sorted(t.id for t in listed.tasks) == sorted(t.id for t in first.tasks)
    assert {t.state for t in listed.tasks} == {S.TASK_STATE_COMPLETED}
    # Submitted once: the repeated submit changed no task (started and completed follow).
    assert {t.version for t in listed.tasks} == {3}
