"""The gateway's watches over one call to the store (gateway.watch): real gRPC servers on
loopback, a scripted WatchMuxService behind a gateway's TaskService, clients in front."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
import pytest

from conveyor.api.store.v1 import watch_pb2
from conveyor.api.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from conveyor.client import AsyncClient
from conveyor.config import Limits
from conveyor.errors import FieldViolation, InvalidArgument, NotFound
from conveyor.intake.submit import Submitter
from conveyor.metrics import GatewayMetrics, ServiceMetrics
from conveyor.server import Server, status_for
from gateway import watch as gateway_watch
from gateway.service import TASK_SERVICE, GatewayService, add_task_service

MAX_BYTES = 4 * 1024 * 1024
MUX = watch_pb2.DESCRIPTOR.services_by_name["WatchMuxService"].full_name
PENDING, RUNNING, COMPLETED = (
    tasks_pb2.TASK_STATE_PENDING,
    tasks_pb2.TASK_STATE_RUNNING,
    tasks_pb2.TASK_STATE_COMPLETED,
)


@dataclass
class FakeMux:
    """A store serving WatchMuxService as the test scripts it: every request it receives
    goes to ``received``; what the test puts in ``send`` goes to the open call (an
    exception ends the call UNAVAILABLE)."""

    server: Server
    received: asyncio.Queue[watch_pb2.WatchTasksRequest] = field(default_factory=asyncio.Queue)
    send: asyncio.Queue[watch_pb2.WatchTasksResponse | Exception] = field(
        default_factory=asyncio.Queue
    )
    calls: int = 0

    async def handle(
        self, requests: AsyncIterator[watch_pb2.WatchTasksRequest], context: Any
    ) -> AsyncIterator[watch_pb2.WatchTasksResponse]:
        self.calls += 1

        async def pump() -> None:
            async for request in requests:
                await self.received.put(request)

        pumping = asyncio.create_task(pump())
        try:
            while True:
                item = await self.send.get()
                if isinstance(item, Exception):
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "store going away")
                else:
                    yield item
        finally:
            pumping.cancel()

    async def next_request(self) -> watch_pb2.WatchTasksRequest:
        async with asyncio.timeout(5):
            return await self.received.get()


@pytest.fixture
async def store() -> AsyncIterator[FakeMux]:
    fake = FakeMux(Server("127.0.0.1:0", [MUX], MAX_BYTES, ServiceMetrics("s")))
    handler = grpc.stream_stream_rpc_method_handler(
        fake.handle,
        request_deserializer=watch_pb2.WatchTasksRequest.FromString,
        response_serializer=watch_pb2.WatchTasksResponse.SerializeToString,
    )
    generic = grpc.method_handlers_generic_handler(MUX, {"WatchTasks": handler})
    fake.server.grpc.add_generic_rpc_handlers((generic,))
    await fake.server.start()
    yield fake
    await fake.server.stop(0.1)


@pytest.fixture
async def gateway(store: FakeMux) -> AsyncIterator[str]:
    server = Server("127.0.0.1:0", [TASK_SERVICE.full_name], MAX_BYTES, GatewayMetrics())
    to_store = grpc.aio.insecure_channel(store.server.address)
    add_task_service(server.grpc, GatewayService(cast(Submitter, None), Limits()), to_store)
    await server.start()
    yield server.address
    await server.stop(0.1)
    await to_store.close()


@pytest.fixture
async def stub(gateway: str) -> AsyncIterator[tasks_pb2_grpc.TaskServiceStub]:
    async with grpc.aio.insecure_channel(gateway) as channel:
        yield tasks_pb2_grpc.TaskServiceStub(channel)


def task(task_id: str, version: int, state: Any = RUNNING) -> tasks_pb2.Task:
    return tasks_pb2.Task(id=task_id, version=version, state=state)


def update(watch_id: int, item: tasks_pb2.Task) -> watch_pb2.WatchUpdate:
    return watch_pb2.WatchUpdate(watch_id=watch_id, task=item)


def ended(watch_id: int, error: Exception | None = None) -> watch_pb2.WatchUpdate:
    status = status_for(error) if isinstance(error, NotFound | InvalidArgument) else None
    data = status.SerializeToString() if status is not None else b""
    return watch_pb2.WatchUpdate(watch_id=watch_id, end=data)


async def read_all(call: Any) -> list[tuple[int, int]]:
    """(version, state) of every update, until the stream ends."""
    async with asyncio.timeout(5):
        return [(r.task.version, r.task.state) async for r in call]


async def test_watches_share_one_store_call_each_getting_its_own_updates(
    store: FakeMux, stub: tasks_pb2_grpc.TaskServiceStub
) -> None:
    calls = {
        name: stub.WatchTask(tasks_pb2.WatchTaskRequest(task_id=name, after_version=after))
        for name, after in (("t1", 0), ("t2", 4), ("t3", 0))
    }
    reads = {name: asyncio.create_task(read_all(call)) for name, call in calls.items()}
    starts = {}
    for _ in calls:
        request = await store.next_request()
        assert request.WhichOneof("action") == "start"
        starts[request.start.task_id] = request
    assert starts["t2"].start.after_version == 4  # the client's request, passed on
    ids = {name: request.watch_id for name, request in starts.items()}
    assert len(set(ids.values())) == 3
    # One message with updates of all three, interleaved.
    await store.send.put(
        watch_pb2.WatchTasksResponse(
            updates=[
                update(ids["t1"], task("t1", 1, PENDING)),
                update(ids["t2"], task("t2", 5)),
                update(ids["t1"], task("t1", 2)),
                update(ids["t3"], task("t3", 1, PENDING)),
                ended(ids["t2"]),
                update(ids["t1"], task("t1", 3, COMPLETED)),
                update(ids["t3"], task("t3", 2)),
            ]
        )
    )
    assert await reads["t1"] == [(1, PENDING), (2, RUNNING), (3, COMPLETED)]
    assert await reads["t2"] == [(5, RUNNING)]
    await store.send.put(watch_pb2.WatchTasksResponse(updates=[ended(ids["t3"])]))
    assert await reads["t3"] == [(1, PENDING), (2, RUNNING)]
    assert store.calls == 1


async def test_the_stores_error_reaches_the_client_with_its_details(
    store: FakeMux, gateway: str
) -> None:
    violation = FieldViolation("task_id", "not a task id")
    async with AsyncClient(gateway, timeout=5) as client:
        watching = asyncio.create_task(anext(client.watch("bad")))
        request = await store.next_request()
        refusal = InvalidArgument("task_id is not valid", [violation])
        await store.send.put(
            watch_pb2.WatchTasksResponse(updates=[ended(request.watch_id, refusal)])
        )
        with pytest.raises(InvalidArgument) as refused:
            await watching
        gone = asyncio.create_task(anext(client.watch("gone")))
        request = await store.next_request()
        missing = NotFound("task gone does not exist")
        await store.send.put(
            watch_pb2.WatchTasksResponse(updates=[ended(request.watch_id, missing)])
        )
        with pytest.raises(NotFound) as not_found:
            await gone
    assert refused.value.violations == [violation]
    assert not_found.value.message == "task gone does not exist"


async def test_a_client_too_far_behind_is_restarted_after_what_it_got(
    store: FakeMux, stub: tasks_pb2_grpc.TaskServiceStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway_watch, "WATCH_QUEUE_SIZE", 2)
    call = stub.WatchTask(tasks_pb2.WatchTaskRequest(task_id="t1"))

    async def versions(count: int) -> list[int]:
        async with asyncio.timeout(5):
            return [(await call.read()).task.version for _ in range(count)]

    first = await store.next_request()
    # Five updates at once: two are held, the third finds the client too far behind.
    burst = [
        update(first.watch_id, task("t1", v, PENDING if v == 1 else RUNNING)) for v in range(1, 6)
    ]
    await store.send.put(watch_pb2.WatchTasksResponse(updates=burst))
    stop = await store.next_request()
    again = await store.next_request()
    assert (stop.watch_id, stop.WhichOneof("action")) == (first.watch_id, "stop")
    assert again.WhichOneof("action") == "start" and again.watch_id != first.watch_id
    assert (again.start.task_id, again.start.after_version) == ("t1", 2)
    assert await versions(2) == [1, 2]
    # The store sends what follows version 2 (from the history, for a real store).
    rest = [update(again.watch_id, task("t1", 3)), update(again.watch_id, task("t1", 4))]
    await store.send.put(watch_pb2.WatchTasksResponse(updates=rest))
    assert await versions(2) == [3, 4]
    last = [update(again.watch_id, task("t1", 5, COMPLETED))]
    await store.send.put(watch_pb2.WatchTasksResponse(updates=last))
    assert await versions(1) == [5]
    async with asyncio.timeout(5):
        assert await call.read() is grpc.aio.EOF  # ended after the terminal state
    assert store.calls == 1


async def test_a_broken_store_call_ends_its_watches_unavailable_and_a_new_one_opens(
    store: FakeMux, stub: tasks_pb2_grpc.TaskServiceStub
) -> None:
    call = stub.WatchTask(tasks_pb2.WatchTaskRequest(task_id="t1"))
    reading = asyncio.create_task(read_all(call))
    first = await store.next_request()
    await store.send.put(
        watch_pb2.WatchTasksResponse(updates=[update(first.watch_id, task("t1", 1))])
    )
    await store.send.put(RuntimeError("break the call"))
    with pytest.raises(grpc.aio.AioRpcError) as broken:
        await reading
    assert broken.value.code() == grpc.StatusCode.UNAVAILABLE
    assert (broken.value.details() or "").startswith("store unavailable: ")
    # The next watch opens a new call.
    later = asyncio.create_task(read_all(stub.WatchTask(tasks_pb2.WatchTaskRequest(task_id="t2"))))
    request = await store.next_request()
    assert request.start.task_id == "t2"
    await store.send.put(
        watch_pb2.WatchTasksResponse(updates=[update(request.watch_id, task("t2", 1, COMPLETED))])
    )
    assert await later == [(1, COMPLETED)]
    assert store.calls == 2


async def test_a_client_that_goes_away_stops_its_watch(
    store: FakeMux, stub: tasks_pb2_grpc.TaskServiceStub
) -> None:
    call = stub.WatchTask(tasks_pb2.WatchTaskRequest(task_id="t1"))
    started = await store.next_request()
    await store.send.put(
        watch_pb2.WatchTasksResponse(updates=[update(started.watch_id, task("t1", 1))])
    )
    async with asyncio.timeout(5):
        await call.read()
    call.cancel()
    stop = await store.next_request()
    assert (stop.watch_id, stop.WhichOneof("action")) == (started.watch_id, "stop")
