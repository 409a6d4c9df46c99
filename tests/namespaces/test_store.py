"""The store itself limits every call to the namespace its caller names (metadata, or each
watch's request on the multiplexer), whoever calls it: not only through the gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import code_pb2, status_pb2

from conveyor.api.store.v1 import quotas_pb2, quotas_pb2_grpc, watch_pb2, watch_pb2_grpc
from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.api.tasks.v1 import tasks_pb2_grpc
from conveyor.auth.namespaces import ALL_NAMESPACES
from conveyor.tasks import duration
from tests.conftest import System
from tests.namespaces.support import A, B, meta, not_found
from tests.support.custom_system import custom, start

pytestmark = pytest.mark.integration


async def test_the_store_answers_only_the_named_namespace(system: System) -> None:
    stub = (await start(system)).stub
    request = custom("greet", S.TaskOptions(delay=duration(600)), name="later")
    mine = (await stub.SubmitTask(request, metadata=meta(A))).task
    theirs = (await stub.SubmitTask(request)).task
    assert system.store is not None
    async with grpc.aio.insecure_channel(system.store.address) as channel:
        store = tasks_pb2_grpc.TaskServiceStub(channel)
        await not_found(store.GetTask(S.GetTaskRequest(task_id=mine.id)))  # none: default
        await not_found(store.GetTask(S.GetTaskRequest(task_id=mine.id), metadata=meta(B)))
        got = await store.GetTask(S.GetTaskRequest(task_id=mine.id), metadata=meta(A))
        assert got.task.namespace == A

        async def listed(metadata: tuple[tuple[str, str], ...] = ()) -> set[str]:
            page = await store.ListTasks(S.ListTasksRequest(), metadata=metadata)
            return {t.id for t in page.tasks}

        assert await listed() == {theirs.id}
        assert await listed(meta(A)) == {mine.id}
        # What the scheduler's reconciliation names: every namespace.
        assert await listed(meta(ALL_NAMESPACES)) == {mine.id, theirs.id}

        counts = quotas_pb2_grpc.NamespaceCountServiceStub(channel)
        request_count = quotas_pb2.CountUnfinishedTasksRequest()
        for namespace, count in ((A, 1), (B, 0), ("default", 1)):
            response = await counts.CountUnfinishedTasks(request_count, metadata=meta(namespace))
            assert response.count == count, namespace

        mux = watch_pb2_grpc.WatchMuxServiceStub(channel)
        ends = await _mux_watch(mux, mine.id, {1: A, 2: B, 3: "", 4: "Not_A_Label"})
        assert ends[1] is None  # A's own watch: updates, no end yet
        assert ends[2] is not None and ends[2].code == code_pb2.NOT_FOUND
        assert ends[3] is not None and ends[3].code == code_pb2.NOT_FOUND  # "" is default
        assert ends[4] is not None and ends[4].code == code_pb2.INVALID_ARGUMENT


async def _mux_watch(
    mux: watch_pb2_grpc.WatchMuxServiceStub, task_id: str, namespaces: dict[int, str]
) -> dict[int, status_pb2.Status | None]:
    """Starts one watch of the task per (watch id, namespace) on one call; the end each
    watch got (None: it streamed the task instead)."""
    ends: dict[int, status_pb2.Status | None] = {}
    done = asyncio.Event()

    async def requests() -> AsyncIterator[watch_pb2.WatchTasksRequest]:
        for watch_id, namespace in namespaces.items():
            start = S.WatchTaskRequest(task_id=task_id)
            yield watch_pb2.WatchTasksRequest(watch_id=watch_id, start=start, namespace=namespace)
        await done.wait()

    call = mux.WatchTasks(requests())
    async with asyncio.timeout(20):
        async for response in call:
            for update in response.updates:
                if update.WhichOneof("item") == "end":
                    ends[update.watch_id] = status_pb2.Status.FromString(update.end)
                else:
                    assert update.task.namespace == A
                    ends.setdefault(update.watch_id, None)
            if len(ends) == len(namespaces):
                break
    done.set()
    call.cancel()
    return ends
