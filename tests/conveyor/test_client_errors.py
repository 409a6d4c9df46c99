"""The SDK against a real gRPC server: statuses become Conveyor errors, watch resumes."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc
import pytest
from grpc_status import rpc_status

from conveyor.api.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from conveyor.client import (
    AsyncClient,
    Client,
    WatchPolicy,
    describe,
    image_processing,
    options,
    rotate,
    text_processing,
)
from conveyor.errors import (
    ConveyorError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from conveyor.server import status_for

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
TASK_ID = "01jb0000000000000000000000"
FAST = WatchPolicy(max_reconnects=3, initial_backoff=0.01, max_backoff=0.02)


def task(version: int, state: tasks_pb2.TaskState = tasks_pb2.TASK_STATE_RUNNING) -> tasks_pb2.Task:
    return tasks_pb2.Task(id=TASK_ID, type="text_processing", state=state, version=version)


async def abort(context: Context, error: ConveyorError) -> None:
    await context.abort_with_status(rpc_status.to_status(status_for(error)))


class FakeTaskService(tasks_pb2_grpc.TaskServiceServicer):
    """Answers like the gateway would, failing on purpose for some inputs."""

    def __init__(self) -> None:
        self.watch_requests: list[tasks_pb2.WatchTaskRequest] = []
        self.watch_script: list[list[tasks_pb2.Task] | grpc.StatusCode] = []

    async def SubmitTask(
        self, request: tasks_pb2.SubmitTaskRequest, context: Context
    ) -> tasks_pb2.SubmitTaskResponse:
        if not request.text_processing.text:
            violations = [
                FieldViolation("text_processing.text", "must not be empty"),
                FieldViolation("options.max_attempts", "must be at most 100 (got 500)"),
            ]
            await abort(context, InvalidArgument.for_fields(violations))
        return tasks_pb2.SubmitTaskResponse(task=task(1, tasks_pb2.TASK_STATE_PENDING))

    async def GetTask(
        self, request: tasks_pb2.GetTaskRequest, context: Context
    ) -> tasks_pb2.GetTaskResponse:
        if request.task_id != TASK_ID:
            await abort(context, NotFound(f"task {request.task_id} not found"))
        return tasks_pb2.GetTaskResponse(task=task(7))

    async def ListTasks(
        self, request: tasks_pb2.ListTasksRequest, context: Context
    ) -> tasks_pb2.ListTasksResponse:
        page = int(request.page_token or "0")
        return tasks_pb2.ListTasksResponse(
            tasks=[task(page * 10 + i) for i in range(2)],
            next_page_token=str(page + 1) if page < 2 else "",
        )

    async def CancelTask(
        self, request: tasks_pb2.CancelTaskRequest, context: Context
    ) -> tasks_pb2.CancelTaskResponse:
        await abort(context, FailedPrecondition("task is COMPLETED already"))
        raise AssertionError("unreachable")

    async def RetryTask(
        self, request: tasks_pb2.RetryTaskRequest, context: Context
    ) -> tasks_pb2.RetryTaskResponse:
        await context.abort(grpc.StatusCode.ABORTED, "not yours")
        raise AssertionError("unreachable")

    async def WatchTask(
        self, request: tasks_pb2.WatchTaskRequest, context: Context
    ) -> AsyncIterator[tasks_pb2.WatchTaskResponse]:
        self.watch_requests.append(request)
        step = self.watch_script.pop(0) if self.watch_script else grpc.StatusCode.UNAVAILABLE
        if isinstance(step, grpc.StatusCode):
            await context.abort(step, "scripted failure")
            return
        for item in step:
            yield tasks_pb2.WatchTaskResponse(task=item)
        if not (step and step[-1].state == tasks_pb2.TASK_STATE_COMPLETED):
            await context.abort(grpc.StatusCode.UNAVAILABLE, "server going away")


@pytest.fixture
async def service() -> AsyncIterator[tuple[FakeTaskService, str]]:
    fake = FakeTaskService()
    server = grpc.aio.server()
    tasks_pb2_grpc.add_TaskServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield fake, f"127.0.0.1:{port}"
    await server.stop(None)


@pytest.fixture
async def client(service: tuple[FakeTaskService, str]) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(service[1], timeout=5, watch_policy=FAST) as c:
        yield c


async def test_invalid_argument_carries_field_violations(client: AsyncClient) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await client.submit(text_processing(""))
    assert caught.value.violations == [
        FieldViolation("text_processing.text", "must not be empty"),
        FieldViolation("options.max_attempts", "must be at most 100 (got 500)"),
    ]
    assert describe(caught.value).startswith(
        "invalid argument: text_processing.text: must not be empty; options.max_attempts"
    )


async def test_status_codes_map_to_error_classes(client: AsyncClient) -> None:
    with pytest.raises(NotFound, match="task nope not found"):
        await client.get("nope")
    with pytest.raises(FailedPrecondition, match="COMPLETED already"):
        await client.cancel(TASK_ID)
    with pytest.raises(ConveyorError) as caught:
        await client.retry(TASK_ID)
    assert type(caught.value) is ConveyorError  # a code with no class of its own
    assert caught.value.code == grpc.StatusCode.ABORTED


async def test_unreachable_gateway_is_unavailable() -> None:
    async with AsyncClient("127.0.0.1:1", timeout=2) as c:
        with pytest.raises(Unavailable):
            await c.get(TASK_ID)


async def test_submit_and_pages(client: AsyncClient) -> None:
    submitted = await client.submit_text("hello", transforms=["upper"], priority="high")
    assert submitted.state == tasks_pb2.TASK_STATE_PENDING
    versions = [t.version async for t in client.iter_tasks(states=["running"])]
    assert versions == [0, 1, 10, 11, 20, 21]


async def test_watch_resumes_after_the_last_version(
    service: tuple[FakeTaskService, str], client: AsyncClient
) -> None:
    fake, _ = service
    fake.watch_script = [[task(1), task(2)], [task(3, tasks_pb2.TASK_STATE_COMPLETED)]]
    seen = [t.version async for t in client.watch(TASK_ID)]
    assert seen == [1, 2, 3]
    assert [r.after_version for r in fake.watch_requests] == [0, 2]


async def test_watch_never_repeats_an_update(
    service: tuple[FakeTaskService, str], client: AsyncClient
) -> None:
    fake, _ = service
    # A server that resends old versions after a reconnect must not confuse the watcher.
    fake.watch_script = [
        [task(4), task(5)],
        grpc.StatusCode.UNAVAILABLE,
        [task(4), task(5), task(6, tasks_pb2.TASK_STATE_COMPLETED)],
    ]
    seen = [t.version async for t in client.watch(TASK_ID, after_version=3)]
    assert seen == [4, 5, 6]
    assert [r.after_version for r in fake.watch_requests] == [3, 5, 5]


async def test_watch_gives_up_after_the_policy(
    service: tuple[FakeTaskService, str], client: AsyncClient
) -> None:
    fake, _ = service
    with pytest.raises(Unavailable, match="gave up"):
        async for _ in client.watch(TASK_ID):
            pass
    assert len(fake.watch_requests) == FAST.max_reconnects + 1


async def test_watch_does_not_retry_other_errors(
    service: tuple[FakeTaskService, str], client: AsyncClient
) -> None:
    fake, _ = service
    fake.watch_script = [grpc.StatusCode.NOT_FOUND]
    with pytest.raises(NotFound):
        async for _ in client.watch(TASK_ID):
            pass
    assert len(fake.watch_requests) == 1


async def test_sync_client_works_from_plain_code(service: tuple[FakeTaskService, str]) -> None:
    fake, addr = service
    fake.watch_script = [[task(1)], [task(2, tasks_pb2.TASK_STATE_COMPLETED)]]

    def script() -> tuple[list[int], str]:
        with Client(addr, timeout=5, watch_policy=FAST) as c:
            versions = [t.version for t in c.watch(TASK_ID)]
            try:
                c.submit_text("")
            except InvalidArgument as exc:
                return versions, exc.violations[0].field
        raise AssertionError("submit should have failed")

    # The server runs on this test's loop, so the blocking client runs in another thread.
    assert await asyncio.to_thread(script) == ([1, 2], "text_processing.text")


async def test_sync_iterator_can_be_abandoned(service: tuple[FakeTaskService, str]) -> None:
    fake, addr = service
    fake.watch_script = [[task(1), task(2)]]

    def script() -> int:
        with Client(addr, timeout=5, watch_policy=FAST) as c:
            updates = c.watch(TASK_ID)
            first = next(updates)
            updates.close()  # must end the stream, not hang or leak it
            return first.version

    assert await asyncio.wait_for(asyncio.to_thread(script), 10) == 1
    assert len(fake.watch_requests) == 1


def test_builders_accept_friendly_names() -> None:
    request = text_processing("hi", ["UPPER", "normalize-whitespace", 3], top_words=5)
    assert list(request.text_processing.transforms) == [1, 6, 3]
    assert not request.HasField("options")
    run_at = dt.datetime(2031, 5, 1, 12, tzinfo=dt.UTC)
    opts = options(priority="low", timeout=1.5, run_at=run_at, labels={"a": "b"})
    assert opts.priority == tasks_pb2.TASK_PRIORITY_LOW
    assert opts.timeout.ToNanoseconds() == 1_500_000_000
    assert opts.run_at.ToDatetime(tzinfo=dt.UTC) == run_at
    image = image_processing(b"x", [rotate(90)], "jpeg", idempotency_key="k")
    assert image.image_processing.output_format == tasks_pb2.IMAGE_FORMAT_JPEG
    assert image.options.idempotency_key == "k"
    with pytest.raises(ValueError, match="choose from upper"):
        text_processing("hi", ["shout"])
