"""Consumers deleted under running services (by an operator, or lost with their stream's
state) are declared again: the store and the worker take up their work by themselves."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from nats.js import JetStreamContext

from conveyor import jetstream, subjects
from conveyor.api.tasks.v1 import tasks_pb2
from tests.conftest import System
from tests.integration.helpers import wait_terminal

pytestmark = pytest.mark.integration

S = tasks_pb2


async def submit_text(system: System, text: str) -> str:
    response: S.SubmitTaskResponse = await system.stub.SubmitTask(
        S.SubmitTaskRequest(text_processing=S.TextProcessingInput(text=text))
    )
    return response.task.id


async def test_deleted_store_and_worker_consumers_are_declared_again(system: System) -> None:
    await system.start()
    first = await submit_text(system, "before the consumers go")
    assert (await wait_terminal(system.stub, first)).state == S.TASK_STATE_COMPLETED

    nc, js = await jetstream.setup(system.common, "operator")
    try:
        await delete_consumers(js)
        second = await submit_text(system, "after the consumers went")
        await until_stored(system, second)
        task = await wait_terminal(system.stub, second, timeout=60)
    finally:
        await jetstream.close(nc)
    assert task.state == S.TASK_STATE_COMPLETED
    assert task.result.text_processing.words == 4
    assert (await system.stub.GetTask(S.GetTaskRequest(task_id=first))).task.version == 3


async def until_stored(system: System, task_id: str) -> None:
    """Waits until the store has the task (its consumer is back within a few seconds)."""
    async with asyncio.timeout(60):
        while True:
            try:
                await system.stub.GetTask(S.GetTaskRequest(task_id=task_id))
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
            await asyncio.sleep(0.1)


async def delete_consumers(js: JetStreamContext) -> None:
    await js.delete_consumer(subjects.STREAM_EVENTS, subjects.STORE_CONSUMER)
    for priority in ("high", "normal", "low"):
        name = subjects.worker_consumer("text_processing", priority)
        await js.delete_consumer(subjects.STREAM_TASKS, name)
    await asyncio.sleep(0.2)  # the services' open requests end with "consumer deleted"
