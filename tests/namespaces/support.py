"""Calls made in a namespace, as the gateway binds it from the call's metadata until
authentication binds it from the caller's key."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.api.tasks.v1 import tasks_pb2_grpc
from conveyor.auth.principal import METADATA_NAMESPACE
from conveyor.tasks import is_terminal

A = "team-a"
B = "team-b"


def meta(namespace: str) -> tuple[tuple[str, str], ...]:
    return ((METADATA_NAMESPACE, namespace),)


async def wait_finished(
    stub: tasks_pb2_grpc.TaskServiceStub, namespace: str, task_id: str, timeout: float = 30
) -> S.Task:
    """The task once terminal, watched in ``namespace``."""
    async with asyncio.timeout(timeout):
        request = S.WatchTaskRequest(task_id=task_id)
        async for update in stub.WatchTask(request, metadata=meta(namespace)):
            if is_terminal(update.task.state):
                task: S.Task = update.task
                return task
    raise AssertionError(f"the watch of {task_id} ended before a terminal state")


async def refused(call: object) -> grpc.aio.AioRpcError:
    """The error a call ended with."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def not_found(call: object) -> str:
    """The details of a call refused NOT_FOUND."""
    error = await refused(call)
    assert error.code() == grpc.StatusCode.NOT_FOUND, error
    return error.details() or ""
