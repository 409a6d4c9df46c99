"""Small helpers for integration tests."""

from __future__ import annotations

import asyncio
import io

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from PIL import Image

from conveyor.api.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from conveyor.tasks import is_terminal


def png(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


async def wait_terminal(
    stub: tasks_pb2_grpc.TaskServiceStub, task_id: str, timeout: float = 60.0
) -> tasks_pb2.Task:
    """Polls GetTask until the task is finished."""
    async with asyncio.timeout(timeout):
        while True:
            task: tasks_pb2.Task = (
                await stub.GetTask(tasks_pb2.GetTaskRequest(task_id=task_id))
            ).task
            if is_terminal(task.state):
                return task
            await asyncio.sleep(0.05)


async def watch_all(
    stub: tasks_pb2_grpc.TaskServiceStub, task_id: str, after_version: int = 0
) -> list[tasks_pb2.Task]:
    """Every update WatchTask sends, until the stream ends."""
    updates = []
    call = stub.WatchTask(tasks_pb2.WatchTaskRequest(task_id=task_id, after_version=after_version))
    async for response in call:
        updates.append(response.task)
    return updates


def violations(err: grpc.aio.AioRpcError) -> dict[str, str]:
    """The BadRequest field violations of an error, field -> description."""
    status = rpc_status.from_call(err)
    assert status is not None, "the error carries no rich status"
    fields: dict[str, str] = {}
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields.update({v.field: v.description for v in bad.field_violations})
    return fields


def varint(value: int) -> bytes:
    """A protobuf varint, by hand."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes([*out, value])


def wire_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, by hand: for messages the Python runtime will not
    build (nested too deep, or with fields their type does not declare)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload
