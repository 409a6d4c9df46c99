"""Reconciliation: a task the store holds as unfinished but no stream holds any more (a
process died between accepting it and queueing it) is failed as lost, and can be re-driven;
tasks that are queued, delayed or running are left alone."""

from __future__ import annotations

import asyncio

import pytest

from conveyor import subjects
from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.auth.principal import METADATA_NAMESPACE
from conveyor.ids import new_task_id
from conveyor.tasks import duration, timestamp
from scheduler.reconcile import LOST_MESSAGE, Reconciler
from tests.faults.conftest import Cluster
from tests.support.checks import audit, wait_finished
from tests.support.nats_client import jetstream
from tests.support.requests import sleep_request

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


TEAM_A = ((METADATA_NAMESPACE, "team-a"),)


def orphan_event() -> events_pb2.TaskEvent:
    """The ``submitted`` event of a gateway that died before it queued the task."""
    created = timestamp()
    task = S.Task(
        id=new_task_id(),
        type="text_processing",
        state=S.TASK_STATE_PENDING,
        max_attempts=3,
        priority=S.TASK_PRIORITY_NORMAL,
        create_time=created,
        update_time=created,
        version=1,
    )
    task_input = events_pb2.TaskMessage().input
    task_input.text_processing.text = "orphaned between two publishes"
    return events_pb2.TaskEvent(
        task_id=task.id,
        type=task.type,
        time=created,
        submitted=events_pb2.Submitted(task=task, input=task_input),
    )


async def test_a_task_in_no_stream_is_failed_as_lost_and_can_be_re_driven(
    cluster: Cluster,
) -> None:
    await cluster.start(workers=1)
    running = await cluster.stub.SubmitTask(sleep_request(60))
    delayed_request = sleep_request(0.1)
    delayed_request.options.delay.CopyFrom(duration(60))
    delayed = await cluster.stub.SubmitTask(delayed_request)
    orphan = orphan_event()
    async with jetstream(cluster.nats_url) as js:
        await js.publish(
            subjects.event_subject(subjects.GATEWAY, orphan.type),
            orphan.SerializeToString(),
            headers={subjects.HEADER_MSG_ID: f"{orphan.task_id}:submitted"},
        )
        async with asyncio.timeout(30):
            while True:
                task = (await cluster.stub.GetTask(S.GetTaskRequest(task_id=running.task.id))).task
                if task.state == S.TASK_STATE_RUNNING:
                    break
                await asyncio.sleep(0.1)
        pending = (await cluster.stub.GetTask(S.GetTaskRequest(task_id=orphan.task_id))).task
        assert pending.state == S.TASK_STATE_PENDING
        await asyncio.sleep(1.5)

        async with cluster.store_stub() as store:
            lost = await Reconciler(js, store, quiet_for=1.0).reconcile_once()

    assert lost == 1
    failed = (await wait_finished(cluster.stub, [orphan.task_id], timeout=30))[orphan.task_id]
    assert failed.state == S.TASK_STATE_FAILED
    assert (failed.error.type, failed.error.message) == ("lost", LOST_MESSAGE)
    for untouched, state in ((running, S.TASK_STATE_RUNNING), (delayed, S.TASK_STATE_SCHEDULED)):
        task = (await cluster.stub.GetTask(S.GetTaskRequest(task_id=untouched.task.id))).task
        assert task.state == state

    # The store kept the input: a re-drive runs the task from it.
    await cluster.stub.RetryTask(S.RetryTaskRequest(task_id=orphan.task_id))
    result = await audit(cluster.stub, cluster.database, cluster.nats_url, [orphan.task_id])
    done = result.tasks[orphan.task_id]
    assert done.attempt == 1
    assert done.state == S.TASK_STATE_COMPLETED


async def test_a_lost_task_older_than_one_round_reads_is_found_by_a_later_round(
    cluster: Cluster,
) -> None:
    await cluster.start(workers=1)
    orphan = orphan_event()
    orphan.submitted.task.namespace = "team-a"  # reconciliation looks at every namespace
    delayed_request = sleep_request(0.1)
    delayed_request.options.delay.CopyFrom(duration(60))
    async with jetstream(cluster.nats_url) as js:
        await js.publish(
            subjects.event_subject(subjects.GATEWAY, orphan.type),
            orphan.SerializeToString(),
            headers={subjects.HEADER_MSG_ID: f"{orphan.task_id}:submitted"},
        )
        # Newer unfinished tasks, more than one round reads: the orphan is listed last.
        delayed = [(await cluster.stub.SubmitTask(delayed_request)).task.id for _ in range(10)]
        await asyncio.sleep(1.5)

        async with cluster.store_stub() as store:
            reconciler = Reconciler(js, store, quiet_for=1.0, max_pages=1, page_size=4)
            found = [await reconciler.reconcile_once() for _ in range(3)]

    assert found == [0, 0, 1]
    request = S.GetTaskRequest(task_id=orphan.task_id)
    async with cluster.store_stub() as store, asyncio.timeout(30):
        while True:
            failed = (await store.GetTask(request, metadata=TEAM_A)).task
            if failed.state == S.TASK_STATE_FAILED:
                break
            await asyncio.sleep(0.2)
    assert failed.error.type == "lost" and failed.namespace == "team-a"
    for task_id in delayed:
        task = (await cluster.stub.GetTask(S.GetTaskRequest(task_id=task_id))).task
        assert task.state == S.TASK_STATE_SCHEDULED
