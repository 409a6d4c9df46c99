"""ListTasks right after SubmitTask lists the task: the store waits until it has applied
every event published before the call (its catch-up asks JetStream for the EVENTS stream's
last sequence), which `conveyor bench` relies on to see a run finished."""

from __future__ import annotations

import pytest

from conveyor.api.tasks.v1 import tasks_pb2
from tests.conftest import System

pytestmark = pytest.mark.integration

S = tasks_pb2


async def test_list_right_after_submit_lists_the_task(system: System) -> None:
    await system.start()
    for i in range(20):
        request = S.SubmitTaskRequest(
            text_processing=S.TextProcessingInput(text="read your writes"),
            options=S.TaskOptions(labels={"round": str(i)}),
        )
        submitted = await system.stub.SubmitTask(request)
        listed = await system.stub.ListTasks(S.ListTasksRequest(labels={"round": str(i)}))
        assert [t.id for t in listed.tasks] == [submitted.task.id]
        newest = await system.stub.ListTasks(S.ListTasksRequest(page_size=1))
        assert [t.id for t in newest.tasks] == [submitted.task.id]
