"""WatchTasks, the dashboards' stream of many tasks: over gRPC, the SDK, the CLI and as
Server-Sent Events at ``GET /v1/tasks:watch``; filtered like ListTasks, limited to the
caller's namespace, results left out, bounded for slow readers."""

from __future__ import annotations

import asyncio
import json
import sys

import grpc
import pytest
from google.protobuf import json_format

from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.api.tasks.v1 import tasks_pb2_grpc
from conveyor.auth.principal import METADATA_NAMESPACE
from conveyor.client import AsyncClient, text_processing
from conveyor.errors import InvalidArgument
from conveyor.tasks import is_terminal
from store import watch as store_watch
from tests.conftest import System
from tests.gateway.test_http_watch import events, limits_with
from tests.support.http import http_status, start_with_http

pytestmark = [pytest.mark.integration]

Metadata = tuple[tuple[str, str], ...]


def meta(namespace: str) -> Metadata:
    return ((METADATA_NAMESPACE, namespace),)


def labelled(board: str, text: str = "watched") -> S.SubmitTaskRequest:
    return text_processing(text, labels={"board": board})


async def submit(
    stub: tasks_pb2_grpc.TaskServiceStub, request: S.SubmitTaskRequest, ns: str
) -> str:
    response = await stub.SubmitTask(request, metadata=meta(ns))
    task_id: str = response.task.id
    return task_id


async def finished(stub: tasks_pb2_grpc.TaskServiceStub, task_id: str, ns: str) -> S.Task:
    async for update in stub.WatchTask(S.WatchTaskRequest(task_id=task_id), metadata=meta(ns)):
        if is_terminal(update.task.state):
            task: S.Task = update.task
            return task
    raise AssertionError(f"the watch of {task_id} ended before a terminal state")


async def until_terminal(changes: object, task_id: str) -> list[S.Task]:
    """The tasks a stream sends, up to ``task_id`` reaching a terminal state."""
    seen: list[S.Task] = []
    async with asyncio.timeout(60):
        async for change in changes:  # type: ignore[attr-defined]
            task = change.task if isinstance(change, S.WatchTasksResponse) else change
            seen.append(task)
            if task.id == task_id and is_terminal(task.state):
                return seen
    raise AssertionError("the stream ended")


async def test_grpc_streams_each_change_of_the_matching_tasks_of_the_namespace_only(
    system: System,
) -> None:
    await system.start()
    stub = system.stub
    call = stub.WatchTasks(S.WatchTasksRequest(labels={"board": "a"}), metadata=meta("team-a"))
    await call.initial_metadata()  # the gateway answers once the store is watching
    # Changes that must not reach the stream, finished before the one that must.
    other_board = await submit(stub, labelled("b"), "team-a")
    other_namespace = await submit(stub, labelled("a"), "team-b")
    await finished(stub, other_board, "team-a")
    await finished(stub, other_namespace, "team-b")
    wanted = await submit(stub, labelled("a"), "team-a")

    seen = await until_terminal(call, wanted)
    call.cancel()
    assert {t.id for t in seen} == {wanted}
    assert seen[0].state == S.TASK_STATE_PENDING
    assert seen[-1].state == S.TASK_STATE_COMPLETED
    assert [t.version for t in seen] == sorted({t.version for t in seen})
    assert all(t.namespace == "team-a" and t.labels["board"] == "a" for t in seen)
    # Results are left out, as in ListTasks; GetTask has them.
    assert not any(t.HasField("result") for t in seen)
    got = await stub.GetTask(S.GetTaskRequest(task_id=wanted), metadata=meta("team-a"))
    assert got.task.HasField("result")


async def test_states_and_type_filter_the_changes(system: System) -> None:
    await system.start()
    stub = system.stub
    request = S.WatchTasksRequest(states=[S.TASK_STATE_COMPLETED], type="text_processing")
    call = stub.WatchTasks(request, metadata=meta("default"))
    await call.initial_metadata()
    summary = await submit(
        stub, S.SubmitTaskRequest(ai_summarization=S.AiSummarizationInput(text="A. B.")), "default"
    )
    await finished(stub, summary, "default")
    text = await submit(stub, labelled("x"), "default")
    seen = await until_terminal(call, text)
    call.cancel()
    assert [(t.id, t.state) for t in seen] == [(text, S.TASK_STATE_COMPLETED)]


async def test_bad_filters_are_refused_with_the_fields_named(system: System) -> None:
    await system.start()
    bad = json_format.ParseDict({"states": [99], "labels": {"": "x"}}, S.WatchTasksRequest())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in system.stub.WatchTasks(bad):
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "states[0]" in (caught.value.details() or "")
    async with AsyncClient(system.gateway.address if system.gateway else "") as client:
        with pytest.raises(InvalidArgument):
            async for _ in client.watch_tasks(type="not a type!"):
                pass


async def test_a_reader_that_falls_behind_is_ended_not_buffered(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One change held per stream: a batch of changes applied at once overflows it.
    monkeypatch.setattr(store_watch, "WATCH_QUEUE_SIZE", 1)
    await system.start()
    stub = system.stub
    call = stub.WatchTasks(S.WatchTasksRequest(), metadata=meta("default"))
    await call.initial_metadata()
    batch = S.SubmitTasksRequest(requests=[labelled("slow", str(i)) for i in range(50)])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async with asyncio.timeout(60):
            while True:  # not reading meanwhile: the reader is as slow as it gets
                await stub.SubmitTasks(batch)
                await asyncio.sleep(0.2)
                if call.done():
                    async for _ in call:
                        pass
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "list the tasks and watch again" in (caught.value.details() or "")
    assert system.store is not None and system.store.hub.watchers == 0


async def test_streams_count_against_the_gateways_watch_limit(system: System) -> None:
    async with await start_with_http(system, limits=limits_with(max_watches=1)) as http:
        assert system.gateway is not None
        held = system.stub.WatchTasks(S.WatchTasksRequest())
        await held.initial_metadata()
        refused = await http.get("/v1/tasks:watch")
        assert refused.status_code == 429 and http_status(refused).code == 8
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in system.stub.WatchTasks(S.WatchTasksRequest()):
                pass
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        held.cancel()
        async with asyncio.timeout(30):  # the closed stream gave its place back
            while (
                system.gateway.http is not None
                and (await http.get("/v1/tasks/00000000000000000000000000:watch")).status_code
                == 429
            ):
                await asyncio.sleep(0.05)


async def test_sse_streams_the_changes_as_events(system: System) -> None:
    async with await start_with_http(system) as http:
        query = "/v1/tasks:watch?labels[board]=sse&states=TASK_STATE_RUNNING&states=5"
        # The same watch over gRPC, to compare the messages.
        request = S.WatchTasksRequest(
            labels={"board": "sse"}, states=[S.TASK_STATE_RUNNING, S.TASK_STATE_COMPLETED]
        )
        over_grpc = system.stub.WatchTasks(request)
        await over_grpc.initial_metadata()
        async with http.stream("GET", query) as response:
            assert response.status_code == 200
            stream = events(response)
            first = await anext(stream)
            assert first.name == "comment" and first.data == ": watching"
            body = {"textProcessing": {"text": "hi"}, "options": {"labels": {"board": "sse"}}}
            task_id = (await http.post("/v1/tasks", json=body)).json()["task"]["id"]
            await http.post("/v1/tasks", json={"textProcessing": {"text": "not on the board"}})
            seen: list[S.Task] = []
            async with asyncio.timeout(60):
                async for event in stream:
                    if event.name == "comment":
                        continue
                    assert event.name == "message" and event.id == ""
                    task = json_format.Parse(event.data, S.WatchTasksResponse()).task
                    seen.append(task)
                    if task.state == S.TASK_STATE_COMPLETED:
                        break
        assert [(t.id, t.state) for t in seen] == [
            (task_id, S.TASK_STATE_RUNNING),
            (task_id, S.TASK_STATE_COMPLETED),
        ]
        assert seen == await until_terminal(over_grpc, task_id)
        over_grpc.cancel()
        bad = await http.get("/v1/tasks:watch?states=7x")
        assert bad.status_code == 400 and "states" in bad.text
        bad_label = await http.get("/v1/tasks:watch", params={"labels[]": "x"})
        assert bad_label.status_code == 400


async def test_the_sdk_iterates_the_changes(system: System) -> None:
    await system.start()
    assert system.gateway is not None
    async with AsyncClient(system.gateway.address) as client:
        changes = client.watch_tasks(states=["completed"], labels={"board": "sdk"})
        # The first change is asked for before submitting; the store's feed must be in
        # place first, which the gateway's initial metadata tells the generator's call.
        first = asyncio.ensure_future(anext(changes))
        async with asyncio.timeout(30):
            while system.store is not None and system.store.hub.watchers == 0:
                await asyncio.sleep(0.01)
        task = await client.submit(labelled("sdk"))
        async with asyncio.timeout(60):
            change = await first
        await changes.aclose()
        assert (change.id, change.state) == (task.id, S.TASK_STATE_COMPLETED)


async def test_the_cli_watches_without_an_id(system: System) -> None:
    await system.start()
    assert system.gateway is not None and system.store is not None
    address = system.gateway.address
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "conveyor.cli",
        "--addr",
        address,
        "--json",
        "watch",
        "--label",
        "board=cli",
        "--state",
        "completed",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            while system.store.hub.watchers == 0:
                await asyncio.sleep(0.02)
            task_id = await submit(system.stub, labelled("cli"), "default")
            assert process.stdout is not None
            line = json.loads(await process.stdout.readline())
        assert (line["id"], line["state"]) == (task_id, "TASK_STATE_COMPLETED")
    finally:
        process.terminate()
        await process.wait()


async def test_a_hub_feed_takes_only_matching_changes_and_marks_overflow() -> None:
    hub = store_watch.WatchHub()
    feed = hub.feed(store_watch.TaskFilter("a", frozenset({S.TASK_STATE_RUNNING}), "", {}))
    other = S.Task(id="x", namespace="b", state=S.TASK_STATE_RUNNING)
    done = S.Task(id="y", namespace="a", state=S.TASK_STATE_COMPLETED)
    running = S.Task(id="z", namespace="a", state=S.TASK_STATE_RUNNING)
    running.result.custom.json = '{"k": "v"}'
    await hub.publish([other, done, running], 1)
    held = feed.queue.get_nowait()
    assert held.id == "z" and not held.HasField("result") and running.HasField("result")
    assert feed.queue.empty() and not feed.lagged
    await hub.publish([running] * (store_watch.WATCH_QUEUE_SIZE + 1), 2)
    assert feed.lagged and feed.queue.qsize() == store_watch.WATCH_QUEUE_SIZE
    hub.close(feed)
    assert hub.watchers == 0
