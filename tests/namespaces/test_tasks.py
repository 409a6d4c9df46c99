"""Tasks belong to the namespace they were submitted in: from any other, every read and
control answers NOT_FOUND, exactly as for an id that does not exist, and lists, stats and
purges hold only the caller's namespace's tasks (against real servers)."""

from __future__ import annotations

import grpc
import pytest

from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.auth.principal import METADATA_NAMESPACE
from conveyor.client import custom_result
from conveyor.ids import new_task_id
from conveyor.tasks import duration
from tests.conftest import System
from tests.namespaces.support import A, B, meta, not_found, refused, wait_finished
from tests.support.custom_system import custom, start

pytestmark = pytest.mark.integration


def delayed(task_type: str = "greet") -> S.SubmitTaskRequest:
    """A task that stays SCHEDULED for the test's length."""
    return custom(task_type, S.TaskOptions(delay=duration(600)), name="later")


async def test_a_task_is_stamped_with_its_namespace_and_only_it_sees_the_task(
    system: System,
) -> None:
    stub = (await start(system)).stub
    mine = (await stub.SubmitTask(custom("greet", name="Ada"), metadata=meta(A))).task
    assert mine.namespace == A
    done = await wait_finished(stub, A, mine.id)
    assert (done.namespace, done.state) == (A, S.TASK_STATE_COMPLETED)
    default = (await stub.SubmitTask(custom("greet", name="Bo"))).task
    assert default.namespace == "default"

    got = (await stub.GetTask(S.GetTaskRequest(task_id=mine.id), metadata=meta(A))).task
    assert got.namespace == A and custom_result(got.result)["greeting"] == "hello Ada"
    # From another namespace the task is answered as one that does not exist.
    unknown = new_task_id()
    for namespace in (B, "default"):
        details = await not_found(
            stub.GetTask(S.GetTaskRequest(task_id=mine.id), metadata=meta(namespace))
        )
        missing = await not_found(
            stub.GetTask(S.GetTaskRequest(task_id=unknown), metadata=meta(namespace))
        )
        assert details.replace(mine.id, unknown) == missing
    await not_found(stub.GetTask(S.GetTaskRequest(task_id=mine.id)))  # no metadata: default

    async def listed(namespace: str) -> list[str]:
        page = await stub.ListTasks(S.ListTasksRequest(), metadata=meta(namespace))
        return [t.id for t in page.tasks]

    assert await listed(A) == [mine.id]
    assert await listed("default") == [default.id]
    assert await listed(B) == []
    by_state = S.ListTasksRequest(states=[S.TASK_STATE_COMPLETED, S.TASK_STATE_PENDING])
    assert [t.id for t in (await stub.ListTasks(by_state, metadata=meta(B))).tasks] == []


async def test_stats_and_payloads_of_another_namespace_are_not_shown(system: System) -> None:
    stub = (await start(system)).stub
    mine = (await stub.SubmitTask(custom("greet", name="Ada"), metadata=meta(A))).task
    await wait_finished(stub, A, mine.id)

    async def totals(namespace: str) -> dict[str, int]:
        stats = await stub.GetTaskStats(S.GetTaskStatsRequest(), metadata=meta(namespace))
        return {t.type: t.total for t in stats.types}

    assert await totals(A) == {"greet": 1}
    assert await totals(B) == {}

    request = S.GetTaskPayloadRequest(task_id=mine.id)
    chunks = [c async for c in stub.GetTaskPayload(request, metadata=meta(A))]
    assert chunks and chunks[0].payload.size_bytes > 0
    await not_found(_drain(stub.GetTaskPayload(request, metadata=meta(B))))


async def test_watch_from_another_namespace_is_not_found(system: System) -> None:
    stub = (await start(system)).stub
    mine = (await stub.SubmitTask(delayed(), metadata=meta(A))).task
    watch = stub.WatchTask(S.WatchTaskRequest(task_id=mine.id), metadata=meta(A))
    first = await watch.read()
    assert first.task.id == mine.id and first.task.namespace == A
    watch.cancel()
    details = await not_found(
        _drain(stub.WatchTask(S.WatchTaskRequest(task_id=mine.id), metadata=meta(B)))
    )
    assert mine.id in details


async def test_cancel_retry_and_delete_from_another_namespace_change_nothing(
    system: System,
) -> None:
    stub = (await start(system)).stub
    queued = (await stub.SubmitTask(delayed(), metadata=meta(A))).task
    failed = (await stub.SubmitTask(custom("fail_once"), metadata=meta(A))).task
    failed = await wait_finished(stub, A, failed.id)
    assert failed.state == S.TASK_STATE_FAILED

    await not_found(stub.CancelTask(S.CancelTaskRequest(task_id=queued.id), metadata=meta(B)))
    await not_found(stub.RetryTask(S.RetryTaskRequest(task_id=failed.id), metadata=meta(B)))
    await not_found(stub.DeleteTask(S.DeleteTaskRequest(task_id=failed.id), metadata=meta(B)))

    async def get(task_id: str) -> S.Task:
        task: S.Task = (
            await stub.GetTask(S.GetTaskRequest(task_id=task_id), metadata=meta(A))
        ).task
        return task

    assert (await get(queued.id)).state == S.TASK_STATE_SCHEDULED
    assert (await get(queued.id)).cancel_requested is False
    assert (await get(failed.id)).version == failed.version  # not re-driven, not deleted

    # In its own namespace each works.
    cancelled = await stub.CancelTask(S.CancelTaskRequest(task_id=queued.id), metadata=meta(A))
    assert cancelled.task.state == S.TASK_STATE_CANCELLED
    await stub.DeleteTask(S.DeleteTaskRequest(task_id=queued.id), metadata=meta(A))
    await not_found(stub.GetTask(S.GetTaskRequest(task_id=queued.id), metadata=meta(A)))


async def test_purge_deletes_only_the_callers_namespace(system: System) -> None:
    stub = (await start(system)).stub
    ids = {}
    for namespace in (A, B):
        task = (await stub.SubmitTask(custom("fail_once"), metadata=meta(namespace))).task
        ids[namespace] = (await wait_finished(stub, namespace, task.id)).id

    purged = await stub.PurgeTasks(S.PurgeTasksRequest(), metadata=meta(B))
    assert purged.purged_count == 1
    await not_found(stub.GetTask(S.GetTaskRequest(task_id=ids[B]), metadata=meta(B)))
    kept = await stub.GetTask(S.GetTaskRequest(task_id=ids[A]), metadata=meta(A))
    assert kept.task.state == S.TASK_STATE_FAILED


async def test_idempotency_keys_are_scoped_per_namespace(system: System) -> None:
    stub = (await start(system)).stub
    request = delayed()
    request.options.idempotency_key = "nightly-report"
    first = {ns: await stub.SubmitTask(request, metadata=meta(ns)) for ns in (A, B, "default")}
    assert len({r.task.id for r in first.values()}) == 3
    assert not any(r.deduplicated for r in first.values())
    for namespace, response in first.items():
        again = await stub.SubmitTask(request, metadata=meta(namespace))
        assert again.deduplicated and again.task.id == response.task.id
        assert again.task.namespace == namespace


async def test_a_namespace_that_is_not_a_dns_label_is_refused(system: System) -> None:
    stub = (await start(system)).stub
    # "*" is what the scheduler's reconciliation asks the store for: no client may.
    for bad in ("Team_A", "*", "-a", "a" * 64):
        error = await refused(
            stub.ListTasks(S.ListTasksRequest(), metadata=((METADATA_NAMESPACE, bad),))
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
        assert METADATA_NAMESPACE in (error.details() or "")


async def _drain(call: object) -> None:
    async for _ in call:  # type: ignore[attr-defined]
        pass
