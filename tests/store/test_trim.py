"""The store removes the events it has applied from EVENTS once they are past their
keeping time, and never one it has not applied."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from google.protobuf import struct_pb2

from conveyor import jetstream, subjects
from conveyor.api.tasks.v1 import tasks_pb2 as S
from store.db import create_engine
from store.repository import TaskRepository
from store.trim import EventTrimmer
from tests.conftest import System
from tests.support import custom_handlers
from tests.support.helpers import wait_terminal

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def greet(name: str) -> S.SubmitTaskRequest:
    payload = struct_pb2.Struct()
    payload.update({"name": name})
    return S.SubmitTaskRequest(custom=S.CustomTaskInput(type="greet", payload=payload))


async def test_applied_events_go_after_their_keeping_time_and_unapplied_ones_stay(
    system: System, tmp_path: Path
) -> None:
    await system.start_store()
    await system.start_worker(custom_handlers.registry())
    await system.start_gateway()
    done = [(await system.stub.SubmitTask(greet(f"a{i}"))).task.id for i in range(5)]
    for task_id in done:
        await wait_terminal(system.stub, task_id)
    assert system.store is not None
    address = system.store.address
    await system.store.stop(0.5)  # what comes now is not applied
    waiting = [(await system.stub.SubmitTask(greet(f"b{i}"))).task.id for i in range(3)]

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'conveyor.db'}")
    nc, js = await jetstream.setup(system.common, "test")
    try:
        repository = TaskRepository(engine)
        applied, _ = await repository.cursor()
        before = (await js.stream_info(subjects.STREAM_EVENTS)).state
        assert before.first_seq == 1 and applied < before.last_seq

        limits = system.common.stream_limits
        assert await EventTrimmer(js, repository, limits).trim_once() == 0  # all kept (24 h)
        expired = replace(limits, events_keep_seconds=0)
        assert await EventTrimmer(js, repository, expired).trim_once() == applied - 1

        after = (await js.stream_info(subjects.STREAM_EVENTS)).state
        # The last applied event stays (the store compares its time), and every event
        # after it: none of those is applied yet.
        assert after.first_seq == applied
        assert after.last_seq == before.last_seq
        assert after.messages == before.last_seq - applied + 1
    finally:
        await jetstream.close(nc)
        await engine.dispose()

    await system.start_store(listen=address)
    for task_id in done + waiting:
        task = await wait_terminal(system.stub, task_id)
        assert task.state == S.TASK_STATE_COMPLETED
