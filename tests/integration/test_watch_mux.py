"""The store's WatchMuxService on a real store: many watches over one call, each as
WatchTask would stream it, ended by a status; stopped on request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import status_pb2

from conveyor.api.store.v1 import watch_pb2, watch_pb2_grpc
from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.ids import new_task_id
from tests.conftest import System
from tests.support.custom_system import custom, start

pytestmark = pytest.mark.integration


class MuxCall:
    """One WatchTasks call to the store, its updates sorted by watch."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.requests: asyncio.Queue[watch_pb2.WatchTasksRequest] = asyncio.Queue()
        self.call = watch_pb2_grpc.WatchMuxServiceStub(channel).WatchTasks(self._requests())
        self.by_watch: dict[int, list[watch_pb2.WatchUpdate]] = {}
        self.messages = 0
        self._reader = asyncio.create_task(self._read())

    async def _requests(self) -> AsyncIterator[watch_pb2.WatchTasksRequest]:
        while True:
            yield await self.requests.get()

    async def _read(self) -> None:
        async for response in self.call:
            self.messages += 1
            for update in response.updates:
                self.by_watch.setdefault(update.watch_id, []).append(update)

    def start(self, watch_id: int, task_id: str, after_version: int = 0) -> None:
        request = S.WatchTaskRequest(task_id=task_id, after_version=after_version)
        self.requests.put_nowait(watch_pb2.WatchTasksRequest(watch_id=watch_id, start=request))

    def stop(self, watch_id: int) -> None:
        self.requests.put_nowait(watch_pb2.WatchTasksRequest(watch_id=watch_id, stop=True))

    async def ended(self, watch_id: int) -> status_pb2.Status:
        async with asyncio.timeout(20):
            while True:
                updates = self.by_watch.get(watch_id, [])
                if updates and updates[-1].WhichOneof("item") == "end":
                    return status_pb2.Status.FromString(updates[-1].end)
                await asyncio.sleep(0.02)

    def versions(self, watch_id: int) -> list[tuple[int, int]]:
        return [
            (u.task.version, u.task.state)
            for u in self.by_watch.get(watch_id, [])
            if u.WhichOneof("item") == "task"
        ]


async def test_watches_over_one_call_stream_what_watch_task_would(system: System) -> None:
    await start(system)
    assert system.store is not None
    greets = [(await system.stub.SubmitTask(custom("greet", name="mux"))).task.id for _ in range(3)]
    async with grpc.aio.insecure_channel(system.store.address) as channel:
        mux = MuxCall(channel)
        for watch_id, task_id in enumerate(greets, start=1):
            mux.start(watch_id, task_id)
        mux.start(4, new_task_id())  # well formed, but no such task
        mux.start(5, "not an id")
        for watch_id in (1, 2, 3):
            assert (await mux.ended(watch_id)).code == 0
            versions = mux.versions(watch_id)
            # From the state it had when the watch started to COMPLETED, one by one.
            assert [v for v, _ in versions] == list(range(versions[0][0], versions[-1][0] + 1))
            assert versions[-1][1] == S.TASK_STATE_COMPLETED
        missing = await mux.ended(4)
        assert missing.code == grpc.StatusCode.NOT_FOUND.value[0]
        assert "does not exist" in missing.message
        refused = await mux.ended(5)
        assert refused.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert refused.details  # the field violation, as WatchTask sends it
        # A done task watched after its last version: only the end.
        last = mux.versions(1)[-1][0]
        mux.start(6, greets[0], after_version=last)
        assert (await mux.ended(6)).code == 0
        assert mux.versions(6) == []
        mux.call.cancel()


async def test_a_stopped_watch_gets_nothing_more_and_an_id_in_use_is_refused(
    system: System,
) -> None:
    await start(system)
    assert system.store is not None
    sleeper = (await system.stub.SubmitTask(custom("sleeper", seconds=60))).task.id
    async with grpc.aio.insecure_channel(system.store.address) as channel:
        mux = MuxCall(channel)
        mux.requests.put_nowait(watch_pb2.WatchTasksRequest(watch_id=7))  # no action
        vague = await mux.ended(7)
        assert vague.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "starts or stops nothing" in vague.message
        mux.start(1, sleeper)
        mux.start(1, sleeper)  # a caller's mistake: refused, the first one goes on
        async with asyncio.timeout(20):
            while not any(s == S.TASK_STATE_RUNNING for _, s in mux.versions(1)):
                await asyncio.sleep(0.02)
        [end] = [u for u in mux.by_watch[1] if u.WhichOneof("item") == "end"]
        refused = status_pb2.Status.FromString(end.end)
        assert refused.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "already running" in refused.message
        mux.stop(1)
        await asyncio.sleep(0.2)
        seen = len(mux.by_watch[1])
        await system.stub.CancelTask(S.CancelTaskRequest(task_id=sleeper))
        # The cancel makes new versions; a stopped watch is not sent them.
        mux.start(2, sleeper)
        assert (await mux.ended(2)).code == 0
        assert mux.versions(2)[-1][1] == S.TASK_STATE_CANCELLED
        assert len(mux.by_watch[1]) == seen
        mux.call.cancel()
