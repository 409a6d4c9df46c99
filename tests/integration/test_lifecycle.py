"""Data lifecycle through the public API: deleting finished tasks one by one and in bulk
(RPCs and CLI), and progress coalesced so a long batch writes a bounded history."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.tasks import duration
from tests.conftest import System
from tests.support.helpers import wait_terminal, watch_all


def text(idempotency_key: str = "", delay: float = 0) -> S.SubmitTaskRequest:
    options = S.TaskOptions(idempotency_key=idempotency_key)
    if delay:
        options.delay.CopyFrom(duration(delay))
    return S.SubmitTaskRequest(text_processing=S.TextProcessingInput(text="a b c"), options=options)


async def code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value.code()


async def test_delete_task_removes_a_finished_task_and_refuses_an_unfinished_one(
    system: System,
) -> None:
    await system.start()
    stub = system.stub
    first = (await stub.SubmitTask(text(idempotency_key="nightly-report"))).task
    await wait_terminal(stub, first.id)

    await stub.DeleteTask(S.DeleteTaskRequest(task_id=first.id))

    not_found = grpc.StatusCode.NOT_FOUND
    assert await code_of(stub.GetTask(S.GetTaskRequest(task_id=first.id))) == not_found
    assert await code_of(watch_all(stub, first.id)) == not_found
    assert (await stub.ListTasks(S.ListTasksRequest())).tasks == []
    again = stub.DeleteTask(S.DeleteTaskRequest(task_id=first.id))
    assert await code_of(again) == not_found
    # The idempotency key went with the task: the same submit makes a new task, rather
    # than answering with (or running again) the deleted one.
    second = await stub.SubmitTask(text(idempotency_key="nightly-report"))
    assert second.task.id != first.id and not second.deduplicated
    assert (await wait_terminal(stub, second.task.id)).state == S.TASK_STATE_COMPLETED

    waiting = (await stub.SubmitTask(text(delay=60))).task
    refused = stub.DeleteTask(S.DeleteTaskRequest(task_id=waiting.id))
    assert await code_of(refused) == grpc.StatusCode.FAILED_PRECONDITION
    assert (await stub.GetTask(S.GetTaskRequest(task_id=waiting.id))).task.id == waiting.id
    await stub.CancelTask(S.CancelTaskRequest(task_id=waiting.id))
    await stub.DeleteTask(S.DeleteTaskRequest(task_id=waiting.id))
    gone = stub.GetTask(S.GetTaskRequest(task_id=waiting.id))
    assert await code_of(gone) == not_found


async def test_cli_purges_finished_tasks_by_state_and_age_and_deletes_one(
    system: System, capsys: pytest.CaptureFixture[str]
) -> None:
    from conveyor.cli import main as cli_main

    await system.start()
    assert system.gateway is not None
    stub, addr = system.stub, system.gateway.address
    done = [(await stub.SubmitTask(text())).task.id for _ in range(3)]
    cancelled = [(await stub.SubmitTask(text(delay=60))).task.id for _ in range(4)]
    for task_id in cancelled:
        await stub.CancelTask(S.CancelTaskRequest(task_id=task_id))
    for task_id in done:
        await wait_terminal(stub, task_id)

    recent_only = ["--addr", addr, "--json", "purge", "--older-than", "30d"]
    assert await asyncio.to_thread(cli_main, recent_only) == 0
    assert capsys.readouterr().out.split() == ["{", '"purged":', "0", "}"]
    argv = ["--addr", addr, "purge", "--state", "cancelled", "--older-than", "0s"]
    assert await asyncio.to_thread(cli_main, argv) == 0
    assert "deleted 4 finished tasks" in capsys.readouterr().err
    assert await asyncio.to_thread(cli_main, ["--addr", addr, "delete", done[0]]) == 0

    listed = await stub.ListTasks(S.ListTasksRequest())
    assert sorted(t.id for t in listed.tasks) == sorted(done[1:])
    running = ["--addr", addr, "purge", "--state", "running", "--older-than", "0s"]
    assert await asyncio.to_thread(cli_main, running) == 2  # only finished tasks
    assert await asyncio.to_thread(cli_main, ["--addr", addr, "delete", done[0]]) == 1


async def test_progress_of_a_long_batch_is_coalesced_and_ends_at_its_last_value(
    system: System,
) -> None:
    await system.start_store()
    # An interval longer than the task: the first report goes at once, the last before
    # the outcome, everything between is coalesced away.
    await system.start_worker(progress_interval_seconds=60.0)
    await system.start_gateway()
    items = [str(i) for i in range(2000)]
    request = S.SubmitTaskRequest(
        batch_processing=S.BatchProcessingInput(
            items=items, operation=S.BATCH_OPERATION_SHA256, chunk_size=1
        )
    )
    submitted = (await system.stub.SubmitTask(request)).task

    task = await wait_terminal(system.stub, submitted.id)

    assert task.state == S.TASK_STATE_COMPLETED
    assert (task.progress.current, task.progress.total) == (2000, 2000)
    # submitted, started, two progress reports, completed (a late start may share one)
    assert task.version <= 5
    history = await watch_all(system.stub, submitted.id, after_version=1)
    assert [t.progress.current for t in history if t.progress.total][-1] == 2000
