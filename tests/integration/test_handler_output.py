"""What a handler hands back that a task cannot hold fails the task clearly, at once, at
the worker: never a retry loop, a task stuck RUNNING or an outcome that cannot be sent."""

from __future__ import annotations

import pytest

from conveyor.api.tasks.v1 import tasks_pb2 as S
from tests.conftest import System
from tests.support.custom_handlers import UNSTORABLE
from tests.support.custom_system import custom, start
from tests.support.helpers import wait_terminal, watch_all

pytestmark = pytest.mark.integration

REASONS = {
    "nan": '["x"]: nan is not a JSON number',
    "infinity": '["x"][1]["y"]: -inf is not a JSON number',
    "deep": "nested deeper than 32 levels",
    "just_too_deep": "nested deeper than 32 levels",
    "loop": "nested deeper than 32 levels",
    "big_int": '["id"]: integer 1180591620717411303424 is beyond 64 bits',
    "huge_int": "of 1329 bits is beyond 64 bits",
    "int_key": '["x"]: key 1 is of type int, not a string',
    "bytes": '["x"]: a value of type bytes is not JSON',
    "surrogate": '["x"]: the string is not valid UTF-8',
}


async def test_a_result_that_cannot_be_stored_as_json_fails_at_once_saying_why(
    system: System,
) -> None:
    await start(system)
    assert set(REASONS) == set(UNSTORABLE)
    ids = {
        kind: (await system.stub.SubmitTask(custom("unstorable", kind=kind))).task.id
        for kind in REASONS
    }
    for kind, reason in REASONS.items():
        task = await wait_terminal(system.stub, ids[kind])
        assert task.state == S.TASK_STATE_FAILED, kind
        assert task.attempt == 1, kind
        assert task.error.type == "NonRetryable", kind
        assert "the handler's result cannot be stored as JSON" in task.error.message, kind
        assert reason in task.error.message, (kind, task.error.message)


async def test_progress_and_errors_with_text_utf8_cannot_hold_are_recorded(
    system: System,
) -> None:
    await start(system)
    submitted = await system.stub.SubmitTask(custom("odd_text"))
    updates = await watch_all(system.stub, submitted.task.id, after_version=1)
    final = updates[-1]
    assert final.state == S.TASK_STATE_FAILED and final.attempt == 1
    assert final.error.type == "NonRetryable"
    assert final.error.message == "bad \ufffd data"
    assert final.progress.message == "half \ufffd way"


async def test_a_retry_delay_that_is_no_number_of_seconds_takes_the_backoff(
    system: System,
) -> None:
    await start(system)
    submitted = await system.stub.SubmitTask(custom("odd_retry"))
    task = await wait_terminal(system.stub, submitted.task.id)
    assert task.state == S.TASK_STATE_FAILED and task.attempt == 2
    first, second = task.attempt_errors
    assert first.type == "Retry"
    assert first.message.startswith("later (Retry delay nan is not 0..")
    assert second.type == "Unreadable"
    assert second.message == "(Unreadable whose message could not be read)"
