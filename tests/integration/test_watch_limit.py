"""Many watches opened at once on one gateway: each is served, or refused with
RESOURCE_EXHAUSTED naming the limit; none is cancelled without a reason."""

from __future__ import annotations

import asyncio
import collections
from dataclasses import replace
from typing import Any

import grpc
import pytest

from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.config import Limits
from conveyor.tasks import duration
from tests.conftest import System

pytestmark = pytest.mark.integration

LIMIT = 1_500
WATCHES = 2_000
"""More than gRPC's default backlog of calls not yet taken by the server (1,000), past
which it cancelled calls at random, with no reason given."""
WatchCall = Any  # grpc.aio.UnaryStreamCall; grpc ships no type information


async def first_update(call: WatchCall) -> str:
    """`open` once the watch has sent its first update, else its status code."""
    try:
        await call.read()
        return "open"
    except grpc.aio.AioRpcError as err:
        if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            assert "CONVEYOR_MAX_WATCHES" in (err.details() or "")
        return str(err.code().name)


async def last_state(call: WatchCall) -> int:
    """The state of the last update of a watch, read to its end."""
    state: int = 0
    while (response := await call.read()) is not grpc.aio.EOF:
        assert isinstance(response, S.WatchTaskResponse)
        state = response.task.state
    return state


async def test_watches_past_the_limit_are_refused_with_a_reason(system: System) -> None:
    await system.start_store()
    await system.start_worker()
    await system.start_gateway(limits=replace(Limits(), max_watches=LIMIT))
    stub = system.stub
    submitted = await stub.SubmitTask(
        S.SubmitTaskRequest(
            text_processing=S.TextProcessingInput(text="later"),
            options=S.TaskOptions(delay=duration(3600)),
        )
    )
    request = S.WatchTaskRequest(task_id=submitted.task.id)
    calls = [stub.WatchTask(request) for _ in range(WATCHES)]
    try:
        async with asyncio.timeout(60):
            outcomes = collections.Counter(await asyncio.gather(*map(first_update, calls)))
        assert outcomes == {"open": LIMIT, "RESOURCE_EXHAUSTED": WATCHES - LIMIT}

        # Once watches end, the room they held is free again.
        await stub.CancelTask(S.CancelTaskRequest(task_id=submitted.task.id))
        async with asyncio.timeout(60):
            last = await asyncio.gather(*(last_state(c) for c in calls if not c.done()))
        assert last == [S.TASK_STATE_CANCELLED] * LIMIT
        late = [r.task.state async for r in stub.WatchTask(request)]
        assert late == [S.TASK_STATE_CANCELLED]
    finally:
        for call in calls:
            call.cancel()
