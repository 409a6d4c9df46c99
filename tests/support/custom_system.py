"""A system whose worker serves the test handlers of :mod:`tests.support.custom_handlers`,
and requests for them."""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2

from conveyor.api.tasks.v1 import tasks_pb2 as S
from tests.conftest import System
from tests.support import custom_handlers


def custom(
    task_type: str, options: S.TaskOptions | None = None, **payload: Any
) -> S.SubmitTaskRequest:
    struct = struct_pb2.Struct()
    struct.update(payload)
    return S.SubmitTaskRequest(
        custom=S.CustomTaskInput(type=task_type, payload=struct), options=options
    )


async def start(system: System) -> System:
    await system.start_store()
    await system.start_worker(custom_handlers.registry(), shutdown_grace_seconds=1.0)
    await system.start_gateway()
    return system
