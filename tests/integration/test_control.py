"""Retries, failure, re-drive, timeouts, cancellation, delays and user-defined types,
against real servers."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from conveyor import messages, subjects
from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.client import custom_result
from conveyor.tasks import duration, from_timestamp
from tests.conftest import System
from tests.support import custom_handlers
from tests.support.custom_handlers import Calls
from tests.support.custom_system import custom, start
from tests.support.helpers import wait_terminal, watch_all

pytestmark = pytest.mark.integration


async def test_user_defined_type_round_trip(system: System) -> None:
    await start(system)
    submitted = await system.stub.SubmitTask(custom("greet", name="Ada"))
    task = await wait_terminal(system.stub, submitted.task.id)
    assert task.state == S.TASK_STATE_COMPLETED
    assert custom_result(task.result) == {"greeting": "hello Ada", "attempt": 1}


async def test_failing_attempts_are_retried_with_their_errors_kept(system: System) -> None:
    await start(system)
    submitted = await system.stub.SubmitTask(custom("flaky"))
    # after_version=1 replays every change after the submit, however late the watch starts.
    updates = await watch_all(system.stub, submitted.task.id, after_version=1)
    states = [u.state for u in updates]
    assert states.count(S.TASK_STATE_RETRYING) == 2
    final = updates[-1]
    assert final.state == S.TASK_STATE_COMPLETED and final.attempt == 3
    assert [(e.attempt, e.type) for e in final.attempt_errors] == [
        (1, "ConnectionError"),
        (2, "ConnectionError"),
    ]
    assert "upstream down on attempt 2" in final.attempt_errors[1].message


async def test_non_retryable_fails_at_once_and_retry_task_runs_it_again(system: System) -> None:
    await start(system)
    submitted = await system.stub.SubmitTask(custom("fail_once"))
    failed = await wait_terminal(system.stub, submitted.task.id)
    assert failed.state == S.TASK_STATE_FAILED and failed.attempt == 1
    assert failed.error.type == "NonRetryable" and "bad data" in failed.error.message
    listed = await system.stub.ListTasks(S.ListTasksRequest(states=[S.TASK_STATE_FAILED]))
    assert [t.id for t in listed.tasks] == [failed.id]

    retried = await system.stub.RetryTask(S.RetryTaskRequest(task_id=failed.id))
    assert retried.task.state == S.TASK_STATE_PENDING
    done = await wait_terminal(system.stub, failed.id)
    assert done.state == S.TASK_STATE_COMPLETED and done.attempt == 2
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.stub.RetryTask(S.RetryTaskRequest(task_id=failed.id))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_timeout_fails_the_attempt(system: System) -> None:
    await start(system)
    options = S.TaskOptions(timeout=duration(0.5), max_attempts=1)
    submitted = await system.stub.SubmitTask(custom("sleeper", options, seconds=30))
    task = await wait_terminal(system.stub, submitted.task.id, timeout=20)
    assert task.state == S.TASK_STATE_FAILED
    assert task.error.type == "timeout" and "0.5s" in task.error.message
    assert task.error.traceback == ""  # no exception of the handler's


async def test_cpu_bound_timeout_kills_the_process_and_the_pool_recovers(system: System) -> None:
    await start(system)
    options = S.TaskOptions(timeout=duration(1.0), max_attempts=1)
    stuck = await system.stub.SubmitTask(custom("spin", options, seconds=600))
    task = await wait_terminal(system.stub, stuck.task.id, timeout=60)
    assert task.state == S.TASK_STATE_FAILED and task.error.type == "timeout"
    quick = [await system.stub.SubmitTask(custom("spin", seconds=0)) for _ in range(3)]
    for submitted in quick:
        assert (await wait_terminal(system.stub, submitted.task.id)).state == S.TASK_STATE_COMPLETED


async def test_a_task_that_kills_its_process_fails_and_others_still_run(system: System) -> None:
    await start(system)
    poison = await system.stub.SubmitTask(custom("crash"))
    task = await wait_terminal(system.stub, poison.task.id, timeout=60)
    assert task.state == S.TASK_STATE_FAILED and task.attempt == 2
    assert task.error.type == "WorkerProcessDied"
    fine = await system.stub.SubmitTask(custom("greet", name="still here"))
    assert (await wait_terminal(system.stub, fine.task.id)).state == S.TASK_STATE_COMPLETED


async def test_cancel_a_running_task_stops_its_handler(system: System) -> None:
    await start(system)
    Calls.sleeper_started = asyncio.Event()
    Calls.sleeper_cancelled = False
    submitted = await system.stub.SubmitTask(custom("sleeper", seconds=60))
    await asyncio.wait_for(Calls.sleeper_started.wait(), 20)
    began = time.monotonic()
    await system.stub.CancelTask(S.CancelTaskRequest(task_id=submitted.task.id))
    task = await wait_terminal(system.stub, submitted.task.id, timeout=10)
    assert task.state == S.TASK_STATE_CANCELLED and Calls.sleeper_cancelled
    assert time.monotonic() - began < 5  # generous for a loaded machine; the target is 1 s


async def test_cancel_a_pending_task_means_it_never_runs(system: System) -> None:
    await start(system)
    worker = system.workers[0]
    await worker.stop()
    system.workers.clear()
    Calls.never = 0
    submitted = await system.stub.SubmitTask(custom("never"))
    assert submitted.task.state == S.TASK_STATE_PENDING
    cancelled = await system.stub.CancelTask(S.CancelTaskRequest(task_id=submitted.task.id))
    assert cancelled.task.state == S.TASK_STATE_CANCELLED
    await system.start_worker(custom_handlers.registry(), shutdown_grace_seconds=1.0)
    marker = await system.stub.SubmitTask(custom("never"))
    await wait_terminal(system.stub, marker.task.id)
    assert Calls.never == 1  # only the marker ran
    task = (await system.stub.GetTask(S.GetTaskRequest(task_id=submitted.task.id))).task
    assert task.state == S.TASK_STATE_CANCELLED and task.attempt == 0


async def test_retry_of_a_task_cancelled_before_it_started_runs_it(system: System) -> None:
    await start(system)
    worker = system.workers[0]
    await worker.stop()
    system.workers.clear()
    submitted = await system.stub.SubmitTask(custom("greet", name="again"))
    # Twice: each re-drive of a task that never started must queue a run of its own.
    for _ in range(2):
        await system.stub.CancelTask(S.CancelTaskRequest(task_id=submitted.task.id))
        retried = await system.stub.RetryTask(S.RetryTaskRequest(task_id=submitted.task.id))
        assert retried.task.state == S.TASK_STATE_PENDING
    await system.start_worker(custom_handlers.registry(), shutdown_grace_seconds=1.0)
    task = await wait_terminal(system.stub, submitted.task.id)
    assert task.state == S.TASK_STATE_COMPLETED and task.attempt == 1


async def test_retry_runs_after_the_cancelled_run_finished_unrecorded(system: System) -> None:
    await system.start_store()
    # The start is reported late, so the running task still looks queued to a cancel.
    await system.start_worker(custom_handlers.registry(), start_event_delay_seconds=60)
    await system.start_gateway()
    Calls.stubborn_runs = 0
    Calls.stubborn_started = asyncio.Event()
    submitted = await system.stub.SubmitTask(custom("stubborn"))
    task_id = submitted.task.id
    await asyncio.wait_for(Calls.stubborn_started.wait(), 20)
    cancelled = await system.stub.CancelTask(S.CancelTaskRequest(task_id=task_id))
    assert cancelled.task.state == S.TASK_STATE_CANCELLED and cancelled.task.attempt == 0
    # Its handler finished anyway; the outcome came after the cancel and was ignored.
    async with asyncio.timeout(20):
        while not any(
            e.HasField("completed") for e in await events_of(system, "stubborn", task_id)
        ):
            await asyncio.sleep(0.1)

    await system.stub.RetryTask(S.RetryTaskRequest(task_id=task_id))
    task = await wait_terminal(system.stub, task_id, timeout=30)
    assert task.state == S.TASK_STATE_COMPLETED
    assert custom_result(task.result) == {"run": 2}


async def test_delayed_task_is_scheduled_and_starts_after_its_time(system: System) -> None:
    await start(system)
    submitted = await system.stub.SubmitTask(
        custom("greet", S.TaskOptions(delay=duration(2)), name="later")
    )
    assert submitted.task.state == S.TASK_STATE_SCHEDULED
    run_at = from_timestamp(submitted.task.run_at)
    task = await wait_terminal(system.stub, submitted.task.id, timeout=30)
    assert task.state == S.TASK_STATE_COMPLETED
    assert from_timestamp(task.start_time) >= run_at


async def test_cli_retry_failed_re_drives_every_dead_letter_of_a_type(system: System) -> None:
    from conveyor.cli import main as cli_main

    await start(system)
    assert system.gateway is not None
    dead = [(await system.stub.SubmitTask(custom("fail_once"))).task.id for _ in range(3)]
    other = (await system.stub.SubmitTask(custom("crash", S.TaskOptions(max_attempts=1)))).task.id
    for task_id in [*dead, other]:
        assert (await wait_terminal(system.stub, task_id, 60)).state == S.TASK_STATE_FAILED
    argv = ["--addr", system.gateway.address, "retry", "--failed", "--type", "fail_once"]
    assert await asyncio.to_thread(cli_main, argv) == 0
    for task_id in dead:
        done = await wait_terminal(system.stub, task_id)
        assert done.state == S.TASK_STATE_COMPLETED and done.attempt == 2
    untouched = (await system.stub.GetTask(S.GetTaskRequest(task_id=other))).task
    assert untouched.state == S.TASK_STATE_FAILED and untouched.attempt == 1


async def test_delayed_task_survives_a_restart_of_every_conveyor_process(system: System) -> None:
    await start(system)
    submitted = await system.stub.SubmitTask(
        custom("greet", S.TaskOptions(delay=duration(3)), name="after restart")
    )
    run_at = from_timestamp(submitted.task.run_at)
    # Everything of ours goes away; only nats-server (which holds the schedule) stays.
    await system.stop()
    system.workers.clear()
    system.channel = None
    await asyncio.sleep(1.0)
    await start(system)
    task = await wait_terminal(system.stub, submitted.task.id, timeout=30)
    assert task.state == S.TASK_STATE_COMPLETED
    started_at = from_timestamp(task.start_time)
    assert started_at >= run_at
    # The target is within a second; allow for a loaded machine, not for a lost schedule.
    assert (started_at - run_at).total_seconds() < 5


async def events_of(system: System, task_type: str, task_id: str) -> list[events_pb2.TaskEvent]:
    """The task's events as the EVENTS stream holds them, in order."""
    assert system.gateway is not None and system.gateway.nc is not None
    js = system.gateway.nc.jetstream()
    sub = await js.pull_subscribe(
        f"{subjects.EVENTS_PREFIX}.*.{task_type}", stream=subjects.STREAM_EVENTS
    )
    found: list[events_pb2.TaskEvent] = []
    try:
        while True:
            try:
                batch = await sub.fetch(100, timeout=0.5)
            except TimeoutError:
                return found
            for msg in batch:
                # One event, or a batch of them (messages.event_batch).
                for event in messages.events_of(msg.headers, msg.data):
                    if event.task_id == task_id:
                        found.append(event)
    finally:
        await sub.unsubscribe()


async def test_a_short_task_reports_its_start_with_its_end_and_is_still_seen_running(
    system: System,
) -> None:
    await system.start_store()
    # A delay far longer than the quick task takes, even on a loaded machine.
    await system.start_worker(custom_handlers.registry(), start_event_delay_seconds=1.0)
    await system.start_gateway()
    quick = await system.stub.SubmitTask(custom("greet", name="Ada"))
    slow = await system.stub.SubmitTask(custom("gauge", seconds=1.5))
    quick_updates = await watch_all(system.stub, quick.task.id, after_version=1)
    slow_updates = await watch_all(system.stub, slow.task.id, after_version=1)

    # Both are seen running, then completed, with a start before their end.
    for updates in (quick_updates, slow_updates):
        assert [u.state for u in updates] == [S.TASK_STATE_RUNNING, S.TASK_STATE_COMPLETED]
        final = updates[-1]
        assert from_timestamp(final.start_time) <= from_timestamp(final.end_time)
    # The short one cost one event fewer: its completion carries its start.
    quick_events = await events_of(system, "greet", quick.task.id)
    assert [e.WhichOneof("kind") for e in quick_events] == ["submitted", "completed"]
    # (Compared as times: the store keeps microseconds.)
    carried = from_timestamp(quick_events[1].start_time)
    assert carried == from_timestamp(quick_updates[-1].start_time)
    # The long one published its start on its own, stamped when it began.
    slow_events = await events_of(system, "gauge", slow.task.id)
    assert [e.WhichOneof("kind") for e in slow_events] == ["submitted", "started", "completed"]
    assert not slow_events[2].HasField("start_time")
    assert from_timestamp(slow_events[1].time) == from_timestamp(slow_updates[-1].start_time)
