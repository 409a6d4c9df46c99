"""The store's WatchMuxService in process, on the repository and hub the applier uses:
every version reaches every watch once and in order, whether the watch's own task or the
call's writer takes it from the hub, when the hub misses a change, and when a watch
falls behind while the call is not read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

from google.rpc import status_pb2

from conveyor.api.events.v1 import events_pb2
from conveyor.api.store.v1 import watch_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from store.mux import WatchMux
from store.repository import TaskRepository
from store.service import StoreService
from store.watch import WATCH_QUEUE_SIZE, WatchHub
from tests.support.factories import Stream, at, submitted, text_result, worker_event


class _Context:
    def invocation_metadata(self) -> tuple[()]:
        return ()


class Call:
    """One WatchTasks call to the mux, its updates sorted by watch."""

    def __init__(self, service: StoreService) -> None:
        self.requests: asyncio.Queue[watch_pb2.WatchTasksRequest] = asyncio.Queue()
        self.messages = aiter(WatchMux(service, 1 << 22).WatchTasks(self._stream(), _Context()))
        self.by_watch: dict[int, list[watch_pb2.WatchUpdate]] = {}
        self.count = 0

    async def _stream(self) -> AsyncIterator[watch_pb2.WatchTasksRequest]:
        while True:
            yield await self.requests.get()

    def start(self, watch_id: int, task_id: str) -> None:
        start = tasks_pb2.WatchTaskRequest(task_id=task_id)
        self.requests.put_nowait(watch_pb2.WatchTasksRequest(watch_id=watch_id, start=start))

    async def read_until(self, done: Any) -> None:
        async with asyncio.timeout(20):
            while not done():
                message = await anext(self.messages)
                assert isinstance(message, bytes)  # written as the mux made it
                self.count += 1
                for update in watch_pb2.WatchTasksResponse.FromString(message).updates:
                    self.by_watch.setdefault(update.watch_id, []).append(update)

    def tasks(self, watch_id: int) -> list[tasks_pb2.Task]:
        return [u.task for u in self.by_watch.get(watch_id, []) if u.WhichOneof("item") == "task"]

    def ended(self, watch_id: int) -> bool:
        updates = self.by_watch.get(watch_id, [])
        return bool(updates) and updates[-1].WhichOneof("item") == "end"

    def assert_complete(self, watch_id: int) -> None:
        """Its versions one by one from the state it found to COMPLETED, then an OK end."""
        versions = [t.version for t in self.tasks(watch_id)]
        assert versions == list(range(versions[0], versions[0] + len(versions)))
        assert self.tasks(watch_id)[-1].state == tasks_pb2.TASK_STATE_COMPLETED
        assert status_pb2.Status.FromString(self.by_watch[watch_id][-1].end).code == 0

    async def close(self) -> None:
        await self.messages.aclose()  # type: ignore[attr-defined]


def service_on(repository: TaskRepository, hub: WatchHub) -> StoreService:
    unused: Any = None  # the watches read none of NATS, the purger or the payload store
    return StoreService(repository, hub, unused, unused, unused, unused, unused, 1 << 21)


def progress(task_id: str, step: int) -> events_pb2.TaskEvent:
    done = tasks_pb2.TaskProgress(current=step, total=1000)
    return worker_event(
        task_id, at(1 + step / 1000), 1, progressed=events_pb2.Progressed(progress=done)
    )


def life(task_id: str, steps: int) -> Iterator[events_pb2.TaskEvent]:
    """A task's worker events after its submission: start, ``steps`` reports, completion."""
    yield worker_event(task_id, at(1), 1, started=events_pb2.Started())
    for step in range(1, steps + 1):
        yield progress(task_id, step)
    yield worker_event(task_id, at(3), 1, completed=events_pb2.Completed(result=text_result(3)))


async def test_every_watch_gets_every_version_in_order_and_a_missed_change_from_history(
    repository: TaskRepository,
) -> None:
    stream, hub = Stream(), WatchHub()
    ids = [submitted().task_id for _ in range(60)]
    await repository.apply(stream.number(*(submitted(i) for i in ids)))
    call = Call(service_on(repository, hub))
    for watch_id, task_id in enumerate(ids, start=1):
        call.start(watch_id, task_id)
    await call.read_until(lambda: all(call.tasks(w) for w in range(1, len(ids) + 1)))
    lives = {task_id: list(life(task_id, 3)) for task_id in ids}
    for step in range(5):  # the tasks move forward together, a batch per step
        changes = await repository.apply(stream.number(*(lives[i][step] for i in ids)))
        # The hub misses a change of every third task once (a replica's gap, say): its
        # watch must fill it from the history before going on.
        handed = [c for n, c in enumerate(changes) if not (step == 2 and n % 3 == 0)]
        await hub.publish(handed, 0)
        await asyncio.sleep(0)  # some batches reach the parked watches before the next
    await call.read_until(lambda: all(call.ended(w) for w in range(1, len(ids) + 1)))
    for watch_id in range(1, len(ids) + 1):
        call.assert_complete(watch_id)
        assert len(call.tasks(watch_id)) == 6  # SUBMITTED (found), STARTED, 3 reports, COMPLETED
    # The updates of many watches travel together.
    assert call.count < len(ids) * 6 / 4
    await call.close()


async def test_a_watch_that_falls_behind_while_the_call_is_not_read_misses_nothing(
    repository: TaskRepository,
) -> None:
    stream, hub = Stream(), WatchHub()
    busy, calm = submitted().task_id, submitted().task_id
    await repository.apply(stream.number(submitted(busy), submitted(calm)))
    call = Call(service_on(repository, hub))
    call.start(1, busy)
    call.start(2, calm)
    await call.read_until(lambda: call.tasks(1) and call.tasks(2))
    # More changes than a watch holds, none read meanwhile: the busy watch overflows.
    for event in life(busy, WATCH_QUEUE_SIZE + 20):
        await hub.publish(await repository.apply(stream.number(event)), 0)
        await asyncio.sleep(0)
    for event in life(calm, 1):
        await hub.publish(await repository.apply(stream.number(event)), 0)
    await call.read_until(lambda: call.ended(1) and call.ended(2))
    call.assert_complete(1)
    call.assert_complete(2)
    assert len(call.tasks(1)) == WATCH_QUEUE_SIZE + 23
    await call.close()
