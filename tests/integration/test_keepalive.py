"""Connections kept alive by pings stay usable: the pings every channel sends are ones
every server permits (conveyor/keepalive.py)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.api.tasks.v1 import tasks_pb2_grpc
from conveyor.client import channel_options
from conveyor.config import CommonSettings
from conveyor.tasks import duration
from tests.conftest import System

pytestmark = pytest.mark.integration

KEEPALIVE_SECONDS = 0.2
IDLE_SECONDS = 3.0
"""Fifteen ping intervals: the old settings ended the connection after three."""


async def test_an_idle_watch_outlives_many_pings_and_other_calls_still_succeed(
    common: CommonSettings, tmp_path: Path
) -> None:
    system = System(replace(common, grpc_keepalive_seconds=KEEPALIVE_SECONDS), tmp_path)
    try:
        await system.start()
        # A client with the SDK's channel options, pinging as often as the services do.
        async with grpc.aio.insecure_channel(
            system.gateway.address if system.gateway else "",
            options=channel_options(keepalive_seconds=KEEPALIVE_SECONDS),
        ) as channel:
            stub = tasks_pb2_grpc.TaskServiceStub(channel)
            submitted = await stub.SubmitTask(
                S.SubmitTaskRequest(
                    text_processing=S.TextProcessingInput(text="later"),
                    options=S.TaskOptions(delay=duration(3600)),
                )
            )
            task_id = submitted.task.id
            watch = stub.WatchTask(S.WatchTaskRequest(task_id=task_id))
            first = await anext(aiter(watch))
            assert first.task.state == S.TASK_STATE_SCHEDULED

            # Nothing moves on either connection while both sides keep pinging.
            await asyncio.sleep(IDLE_SECONDS)

            listed = await stub.ListTasks(S.ListTasksRequest(), timeout=10)
            assert [t.id for t in listed.tasks] == [task_id]
            await stub.CancelTask(S.CancelTaskRequest(task_id=task_id), timeout=10)
            # The watch opened before the idle time is still there, and sees the end.
            rest = [response.task.state async for response in watch]
            assert rest[-1] == S.TASK_STATE_CANCELLED
    finally:
        await asyncio.wait_for(system.stop(), 60)
