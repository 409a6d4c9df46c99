"""JetStream state lost under running services: consumers deleted (by an operator, or with
their stream) are declared again, and the store follows an EVENTS stream made again or
restored from an older backup under its kept database (store.history). The other way
round, a store whose database is new under a kept stream rebuilds it from the stream."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import grpc
import pytest
from nats.js import JetStreamContext

from conveyor import jetstream, subjects
from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from store.repository import TaskRepository
from tests.conftest import NatsServer, System
from tests.support.helpers import wait_terminal

pytestmark = pytest.mark.integration

S = tasks_pb2


async def submit_text(system: System, text: str) -> str:
    response: S.SubmitTaskResponse = await system.stub.SubmitTask(
        S.SubmitTaskRequest(text_processing=S.TextProcessingInput(text=text))
    )
    return response.task.id


async def test_deleted_store_and_worker_consumers_are_declared_again(system: System) -> None:
    await system.start()
    first = await submit_text(system, "before the consumers go")
    assert (await wait_terminal(system.stub, first)).state == S.TASK_STATE_COMPLETED

    nc, js = await jetstream.setup(system.common, "operator")
    try:
        await delete_consumers(js)
        second = await submit_text(system, "after the consumers went")
        await until_stored(system, second)
        task = await wait_terminal(system.stub, second, timeout=60)
    finally:
        await jetstream.close(nc)
    assert task.state == S.TASK_STATE_COMPLETED
    assert task.result.text_processing.words == 4
    assert (await system.stub.GetTask(S.GetTaskRequest(task_id=first))).task.version == 3


async def until_stored(system: System, task_id: str) -> None:
    """Waits until the store has the task (its consumer is back within a few seconds)."""
    async with asyncio.timeout(60):
        while True:
            try:
                await system.stub.GetTask(S.GetTaskRequest(task_id=task_id))
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
            await asyncio.sleep(0.1)


async def delete_consumers(js: JetStreamContext) -> None:
    await js.delete_consumer(subjects.STREAM_EVENTS, subjects.STORE_CONSUMER)
    for priority in ("high", "normal", "low"):
        name = subjects.worker_consumer("text_processing", priority)
        await js.delete_consumer(subjects.STREAM_TASKS, name)
    await asyncio.sleep(0.2)  # the services' open requests end with "consumer deleted"


async def submit_until_accepted(system: System, text: str) -> str:
    """Submits once the gateway is connected again (nats-server was restarted)."""
    async with asyncio.timeout(60):
        while True:
            try:
                return await submit_text(system, text)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
            await asyncio.sleep(0.2)


async def completed(system: System, task_id: str) -> tasks_pb2.Task:
    await until_stored(system, task_id)
    task = await wait_terminal(system.stub, task_id, timeout=60)
    assert task.state == S.TASK_STATE_COMPLETED
    return task


async def test_an_events_stream_made_again_is_applied_from_its_start(system: System) -> None:
    await system.start()
    before = [await submit_text(system, f"task {i} of the old stream") for i in range(3)]
    for task_id in before:
        await completed(system, task_id)

    nc, js = await jetstream.setup(system.common, "operator")
    try:
        info = await js.stream_info(subjects.STREAM_EVENTS)
        applied = info.state.last_seq
        await js.delete_stream(subjects.STREAM_EVENTS)
        await js.add_stream(info.config)
        after = await submit_text(system, "the first task of the new stream")
        # Its events have sequences the old stream's events had: applied all the same.
        task = await completed(system, after)
        assert (await js.stream_info(subjects.STREAM_EVENTS)).state.last_seq < applied
    finally:
        await jetstream.close(nc)
    assert task.result.text_processing.words == 7
    for task_id in before:  # the database kept them
        got = await system.stub.GetTask(S.GetTaskRequest(task_id=task_id))
        assert got.task.state == S.TASK_STATE_COMPLETED


async def test_a_stream_restored_from_an_older_backup_is_followed(
    system: System, nats_server: NatsServer, tmp_path: Path
) -> None:
    await system.start()
    first = await submit_text(system, "in the backup")
    await completed(system, first)
    store_dir = nats_server.data_dir / "js"
    backup = tmp_path / "backup"
    nats_server.stop()
    shutil.copytree(store_dir, backup)  # the stream and every consumer, as they are now
    nats_server.start()
    lost = await submit_until_accepted(system, "after the backup")
    await completed(system, lost)

    nats_server.stop()
    shutil.rmtree(store_dir)
    shutil.copytree(backup, store_dir)  # back to the backup: the stream goes back too
    nats_server.start()
    # The store's consumer came back with the stream, so nothing fails: the new events'
    # sequences, at or below the cursor, tell the store that the stream went back.
    after = await submit_until_accepted(system, "after the restore")
    task = await completed(system, after)
    assert task.result.text_processing.words == 3
    for task_id in (first, lost):  # the database kept both
        got = await system.stub.GetTask(S.GetTaskRequest(task_id=task_id))
        assert got.task.state == S.TASK_STATE_COMPLETED


async def test_a_nats_server_back_without_its_state_is_declared_again(
    system: System, nats_server: NatsServer
) -> None:
    await system.start()
    first = await submit_text(system, "before the state was lost")
    await completed(system, first)

    nats_server.stop()
    shutil.rmtree(nats_server.data_dir / "js")  # streams, consumers and buckets gone
    nats_server.start()
    # The services reconnect and declare the streams and buckets again; the worker
    # registers its types again, and the store follows the new EVENTS stream.
    after = await submit_until_accepted(system, "after the state was lost")
    task = await completed(system, after)
    assert task.result.text_processing.words == 5
    nc, js = await jetstream.setup(system.common, "operator")
    try:
        types = await js.key_value(subjects.KV_TYPES)
        assert (await types.get("text_processing")).value
        await js.object_store(subjects.OBJECT_PAYLOADS)  # large payloads have a home again
    finally:
        await jetstream.close(nc)
    got = await system.stub.GetTask(S.GetTaskRequest(task_id=first))
    assert got.task.state == S.TASK_STATE_COMPLETED  # the database kept it


async def test_a_store_with_a_new_database_rebuilds_it_from_the_stream(
    system: System, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await system.start()
    ids = list(await asyncio.gather(*(submit_text(system, "word " * (i + 1)) for i in range(40))))
    before = {task_id: await completed(system, task_id) for task_id in ids}
    assert system.store is not None
    await system.store.stop(0.5)  # its database is lost with it

    transactions: list[int] = []
    apply = TaskRepository.apply

    async def counted(
        self: TaskRepository, events: list[tuple[int, events_pb2.TaskEvent]], *args: object
    ) -> list[tasks_pb2.Task]:
        transactions.append(len({sequence for sequence, _ in events}))  # messages, not events
        return await apply(self, events, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(TaskRepository, "apply", counted)
    nc, js = await jetstream.setup(system.common, "operator")
    try:
        events = (await js.stream_info(subjects.STREAM_EVENTS)).state.last_seq
        await system.start_store(f"sqlite+aiosqlite:///{tmp_path / 'new.db'}", event_batch_size=16)
        assert system.store is not None
        async with grpc.aio.insecure_channel(system.store.address) as channel:
            store = tasks_pb2_grpc.TaskServiceStub(channel)
            # No new event comes: the store sees by itself that its consumer acknowledged
            # events its database does not hold.
            after = {task_id: await until_version(store, before[task_id]) for task_id in ids}
        assert (await js.stream_info(subjects.STREAM_EVENTS)).state.last_seq == events
    finally:
        await jetstream.close(nc)
    assert after == before
    # A batch of messages per transaction (a message may hold several events), never the
    # whole stream at once.
    assert sum(transactions) == events
    assert max(transactions) <= 16


async def until_version(
    store: tasks_pb2_grpc.TaskServiceStub, task: tasks_pb2.Task
) -> tasks_pb2.Task:
    """The store's task once it has the version given (it is rebuilding meanwhile)."""
    async with asyncio.timeout(60):
        while True:
            try:
                got: tasks_pb2.Task = (await store.GetTask(S.GetTaskRequest(task_id=task.id))).task
                if got.version >= task.version:
                    return got
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
            await asyncio.sleep(0.1)
