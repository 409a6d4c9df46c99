"""The core pipeline against a real nats-server, real gRPC servers and a real SQLite file."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from conveyor import subjects
from conveyor.api.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from conveyor.tasks import duration
from tests.conftest import System
from tests.support.helpers import png, violations, wait_terminal, watch_all

pytestmark = pytest.mark.integration

S = tasks_pb2


async def started(system: System) -> System:
    await system.start()
    return system


async def test_each_builtin_type_completes_with_real_results(system: System) -> None:
    await started(system)
    stub = system.stub
    text = "The cat sat on the mat. The cat was happy! Was the dog happy?"
    requests = {
        "text_processing": S.SubmitTaskRequest(
            text_processing=S.TextProcessingInput(text=text, transforms=[S.TEXT_TRANSFORM_UPPER])
        ),
        "ai_summarization": S.SubmitTaskRequest(
            ai_summarization=S.AiSummarizationInput(text=text, max_sentences=1)
        ),
        "batch_processing": S.SubmitTaskRequest(
            batch_processing=S.BatchProcessingInput(
                items=["1", "2", "x", "4"], operation=S.BATCH_OPERATION_SQUARE, chunk_size=2
            )
        ),
        "image_processing": S.SubmitTaskRequest(
            image_processing=S.ImageProcessingInput(
                image=png(64, 48),
                operations=[S.ImageOperation(resize=S.ImageResize(width=32, height=24))],
                output_format=S.IMAGE_FORMAT_JPEG,
            )
        ),
    }
    ids = {}
    for task_type, request in requests.items():
        response = await stub.SubmitTask(request)
        assert response.task.type == task_type
        assert response.task.state == S.TASK_STATE_PENDING
        ids[task_type] = response.task.id
    done = {t: await wait_terminal(stub, i) for t, i in ids.items()}
    for task in done.values():
        assert task.state == S.TASK_STATE_COMPLETED, task.error
        assert task.attempt == 1

    stats = done["text_processing"].result.text_processing
    assert (stats.words, stats.sentences) == (14, 3)
    assert stats.transforms[0].text == text.upper()
    summary = done["ai_summarization"].result.ai_summarization
    assert len(summary.sentences) == 1 and summary.original_sentence_count == 3
    batch = done["batch_processing"].result.batch_processing
    assert [i.output for i in batch.items if i.ok] == ["1", "4", "16"]
    assert (batch.succeeded, batch.failed, batch.chunks) == (3, 1, 2)
    image = done["image_processing"].result.image_processing
    assert (image.width, image.height, image.format) == (32, 24, S.IMAGE_FORMAT_JPEG)
    assert image.image[:2] == b"\xff\xd8"  # a JPEG


async def test_get_right_after_submit_sees_the_task(system: System) -> None:
    await started(system)
    for _ in range(20):
        submitted = await system.stub.SubmitTask(
            S.SubmitTaskRequest(text_processing=S.TextProcessingInput(text="read your writes"))
        )
        got = await system.stub.GetTask(S.GetTaskRequest(task_id=submitted.task.id))
        assert got.task.id == submitted.task.id
        assert got.task.type == "text_processing"


async def test_same_idempotency_key_returns_the_same_task(system: System) -> None:
    await started(system)
    request = S.SubmitTaskRequest(
        text_processing=S.TextProcessingInput(text="once"),
        options=S.TaskOptions(idempotency_key="order-42"),
    )
    first, second = await asyncio.gather(
        system.stub.SubmitTask(request), system.stub.SubmitTask(request)
    )
    assert first.task.id == second.task.id
    assert first.deduplicated != second.deduplicated
    third = await system.stub.SubmitTask(request)
    assert third.task.id == first.task.id and third.deduplicated
    listed = await system.stub.ListTasks(S.ListTasksRequest(type="text_processing"))
    assert [t.id for t in listed.tasks] == [first.task.id]


async def test_unknown_type_is_refused_and_nothing_is_queued(system: System) -> None:
    await started(system)
    request = S.SubmitTaskRequest(custom=S.CustomTaskInput(type="never_registered"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.stub.SubmitTask(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "custom.type" in violations(caught.value)
    await assert_nothing_queued(system)


async def test_bad_input_names_the_field_and_reaches_no_worker(system: System) -> None:
    await started(system)
    cases = {
        "input": S.SubmitTaskRequest(),
        "text_processing.text": S.SubmitTaskRequest(text_processing=S.TextProcessingInput()),
        "options.max_attempts": S.SubmitTaskRequest(
            text_processing=S.TextProcessingInput(text="x"),
            options=S.TaskOptions(max_attempts=10_000),
        ),
        "image_processing.image": S.SubmitTaskRequest(
            image_processing=S.ImageProcessingInput(image=b"\0" * (10 * 1024 * 1024 + 1))
        ),
    }
    for field, request in cases.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await system.stub.SubmitTask(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert any(f.startswith(field) for f in violations(caught.value)), (field, caught.value)
    unknown_enum = S.SubmitTaskRequest(text_processing=S.TextProcessingInput(text="x"))
    unknown_enum.text_processing.transforms.append(99)  # type: ignore[arg-type]  # on purpose
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.stub.SubmitTask(unknown_enum)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    batch = S.SubmitTasksRequest(
        requests=[
            S.SubmitTaskRequest(text_processing=S.TextProcessingInput(text="fine")),
            S.SubmitTaskRequest(text_processing=S.TextProcessingInput()),
        ]
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.stub.SubmitTasks(batch)
    assert "requests[1].text_processing.text" in violations(caught.value)
    await assert_nothing_queued(system)


async def assert_nothing_queued(system: System) -> None:
    assert system.gateway is not None and system.gateway.nc is not None
    js = system.gateway.nc.jetstream()
    info = await js.stream_info(subjects.STREAM_TASKS)
    assert info.state.messages == 0
    listed = await system.stub.ListTasks(S.ListTasksRequest())
    assert list(listed.tasks) == []


async def test_watch_is_complete_ordered_and_resumable(system: System) -> None:
    await started(system)
    submitted = await system.stub.SubmitTask(
        S.SubmitTaskRequest(
            batch_processing=S.BatchProcessingInput(
                items=[str(i) for i in range(50)], operation=S.BATCH_OPERATION_SHA256, chunk_size=10
            ),
            # Delayed, so the watch surely starts before the task does.
            options=S.TaskOptions(delay=duration(1)),
        )
    )
    updates = await watch_all(system.stub, submitted.task.id)
    assert updates[0].state == S.TASK_STATE_SCHEDULED
    versions = [u.version for u in updates]
    assert versions == list(range(versions[0], versions[0] + len(versions)))
    assert updates[-1].state == S.TASK_STATE_COMPLETED
    states = [u.state for u in updates]
    assert S.TASK_STATE_RUNNING in states
    progress = [
        u.progress.current for u in updates if u.state == S.TASK_STATE_RUNNING and u.progress.total
    ]
    # Reports closer together than the worker's progress interval are coalesced; the
    # latest always comes through.
    assert progress and progress == sorted(set(progress)) and progress[-1] == 50
    # A watcher that reconnects after version 3 gets exactly the rest.
    resumed = await watch_all(system.stub, submitted.task.id, after_version=3)
    assert [u.version for u in resumed] == [v for v in versions if v > 3]
    # A watch of a finished task sends the final state and ends.
    final = await watch_all(system.stub, submitted.task.id)
    assert [u.state for u in final] == [S.TASK_STATE_COMPLETED]


async def test_list_filters_and_pages_newest_first(system: System) -> None:
    await started(system)
    ids = []
    for i in range(7):
        response = await system.stub.SubmitTask(
            S.SubmitTaskRequest(
                text_processing=S.TextProcessingInput(text=f"task {i}"),
                options=S.TaskOptions(labels={"parity": "even" if i % 2 == 0 else "odd"}),
            )
        )
        ids.append(response.task.id)
    seen: list[str] = []
    token = ""
    while True:
        page = await system.stub.ListTasks(S.ListTasksRequest(page_size=3, page_token=token))
        seen.extend(t.id for t in page.tasks)
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(ids))
    even = await system.stub.ListTasks(S.ListTasksRequest(labels={"parity": "even"}))
    assert [t.id for t in even.tasks] == [ids[6], ids[4], ids[2], ids[0]]


async def test_cancel_a_finished_task_is_a_failed_precondition(system: System) -> None:
    await started(system)
    submitted = await system.stub.SubmitTask(
        S.SubmitTaskRequest(text_processing=S.TextProcessingInput(text="quick"))
    )
    await wait_terminal(system.stub, submitted.task.id)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.stub.CancelTask(S.CancelTaskRequest(task_id=submitted.task.id))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_get_unknown_task_is_not_found(system: System) -> None:
    await started(system)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.stub.GetTask(S.GetTaskRequest(task_id="0" * 26))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.stub.GetTask(S.GetTaskRequest(task_id="../etc/passwd"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_submit_sent_to_the_store_is_unimplemented(system: System) -> None:
    await started(system)
    assert system.store is not None
    async with grpc.aio.insecure_channel(system.store.address) as channel:
        store = tasks_pb2_grpc.TaskServiceStub(channel)
        request = S.SubmitTaskRequest(text_processing=S.TextProcessingInput(text="wrong port"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await store.SubmitTask(request)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "SubmitTask" in (caught.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await store.SubmitTasks(S.SubmitTasksRequest(requests=[request]))
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # Submits belong to the gateway, which still takes them.
    submitted = await system.stub.SubmitTask(request)
    assert (await wait_terminal(system.stub, submitted.task.id)).state == S.TASK_STATE_COMPLETED
