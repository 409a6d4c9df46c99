"""Failure-rate analysis over real tasks, through the API and the CLI."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.tasks import duration
from tests.conftest import System
from tests.support import custom_handlers
from tests.support.helpers import wait_terminal

pytestmark = pytest.mark.integration


def custom(task_type: str, **payload: Any) -> S.SubmitTaskRequest:
    struct = struct_pb2.Struct()
    struct.update(payload)
    return S.SubmitTaskRequest(custom=S.CustomTaskInput(type=task_type, payload=struct))


async def test_stats_count_outcomes_retries_and_errors_per_type(
    system: System, capsys: pytest.CaptureFixture[str]
) -> None:
    from conveyor.cli import main as cli_main

    await system.start_store()
    await system.start_worker(custom_handlers.registry(), shutdown_grace_seconds=1.0)
    await system.start_gateway()
    ids = [(await system.stub.SubmitTask(custom("greet", name=str(i)))).task.id for i in range(3)]
    ids.append((await system.stub.SubmitTask(custom("flaky"))).task.id)
    ids += [(await system.stub.SubmitTask(custom("fail_once"))).task.id for _ in range(2)]
    for task_id in ids:
        await wait_terminal(system.stub, task_id)

    response = await system.stub.GetTaskStats(S.GetTaskStatsRequest(window=duration(600)))
    by_type = {t.type: t for t in response.types}
    assert set(by_type) == {"greet", "flaky", "fail_once"}
    greet = by_type["greet"]
    assert (greet.total, greet.success_rate, greet.retry_rate) == (3, 1.0, 0.0)
    assert greet.run_time.count == 3 and greet.queue_wait.count == 3
    flaky = by_type["flaky"]
    assert (flaky.success_rate, flaky.retry_rate) == (1.0, 1.0)
    assert sorted((e.type, e.message, e.count) for e in flaky.top_errors) == [
        ("ConnectionError", "upstream down on attempt 1", 1),
        ("ConnectionError", "upstream down on attempt 2", 1),
    ]
    failing = by_type["fail_once"]
    assert failing.success_rate == 0.0
    assert [(s.state, s.count) for s in failing.states] == [(S.TASK_STATE_FAILED, 2)]
    assert [(e.type, e.count) for e in failing.top_errors] == [("NonRetryable", 2)]

    only = await system.stub.GetTaskStats(S.GetTaskStatsRequest(type="greet"))
    assert [t.type for t in only.types] == ["greet"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.stub.GetTaskStats(S.GetTaskStatsRequest(window=duration(40 * 86400)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    assert system.gateway is not None
    addr = system.gateway.address
    assert await asyncio.to_thread(cli_main, ["--addr", addr, "stats", "--window", "10m"]) == 0
    printed = capsys.readouterr().out
    assert "fail_once" in printed and "NonRetryable" in printed and "100.0%" in printed
    assert await asyncio.to_thread(cli_main, ["--addr", addr, "--json", "stats"]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert {t["type"] for t in parsed["types"]} == {"greet", "flaky", "fail_once"}
    top = ["--addr", addr, "top", "--iterations", "1"]
    assert await asyncio.to_thread(cli_main, top) == 0
    assert "greet" in capsys.readouterr().out


async def test_the_sdk_reads_the_series_inputs_and_creation_bounds(system: System) -> None:
    from conveyor.client import AsyncClient
    from conveyor.tasks import from_timestamp

    await system.start_store()
    await system.start_worker(custom_handlers.registry(), shutdown_grace_seconds=1.0)
    await system.start_gateway()
    assert system.gateway is not None
    async with AsyncClient(system.gateway.address) as client:
        greeted = await client.submit_custom("greet", {"name": "ada"})
        failed = (await system.stub.SubmitTask(custom("fail_once"))).task
        for task_id in (greeted.id, failed.id):
            await wait_terminal(system.stub, task_id)
        stats = await client.stats(window=600, bucket=60)
        assert len(stats.series) == 10
        totals = [
            sum(getattr(b, name) for b in stats.series)
            for name in ("submitted", "completed", "failed")
        ]
        assert totals == [2, 1, 1]
        full = await client.get(greeted.id, with_input=True)
        assert json.loads(full.input.custom.json) == {"name": "ada"}
        assert not (await client.get(greeted.id)).HasField("input")
        since = from_timestamp(failed.create_time)
        page = await client.list(created_after=since)
        assert [t.id for t in page.tasks] == [failed.id]
        page = await client.list(created_before=since)
        assert [t.id for t in page.tasks] == [greeted.id]
