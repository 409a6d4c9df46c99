"""A failed attempt's error carries the traceback of what the handler raised, where it
raised it (the child process for a CPU-bound handler), bounded, and stored with the task."""

from __future__ import annotations

import inspect

import pytest

from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.tracebacks import MAX_ERROR_CHARS, MAX_TRACEBACK_BYTES
from tests.conftest import System
from tests.support import custom_handlers
from tests.support.custom_system import custom, start
from tests.support.helpers import wait_terminal

pytestmark = pytest.mark.integration

RAISING_LINE = inspect.getsourcelines(custom_handlers._check_quantity)[1] + 4
"""The line of _check_quantity's raise."""
FILE = custom_handlers.__file__


def frame(function: str, line: int | None = None) -> str:
    """How a traceback names a frame of the test handlers (of any line when None)."""
    if line is None:
        return f", in {function}\n"
    return f'File "{FILE}", line {line}, in {function}\n'


async def test_a_handler_raising_deep_in_a_call_chain_records_where(system: System) -> None:
    await start(system)
    submitted = await system.stub.SubmitTask(custom("invalid", quantity=-1))
    task = await wait_terminal(system.stub, submitted.task.id)
    assert task.state == S.TASK_STATE_FAILED and task.attempt == 2
    assert task.error.type == "ValueError"
    traceback = task.error.traceback
    assert traceback.startswith("Traceback (most recent call last):\n")
    # It starts at the handler: the worker's own frames above it are left out.
    assert traceback.split("\n")[1].endswith(frame("invalid_async").rstrip("\n")), traceback
    chain = [frame("invalid_async"), frame("invalid"), frame("_parse_row")]
    chain.append(frame("_check_quantity", RAISING_LINE))
    positions = [traceback.find(part) for part in chain]
    assert -1 not in positions and positions == sorted(positions), traceback
    assert traceback.endswith("ValueError: quantity -1.0 is below zero\n")
    # Each attempt's error keeps its own traceback; GetTask returns them.
    got = (await system.stub.GetTask(S.GetTaskRequest(task_id=task.id))).task
    assert [e.attempt for e in got.attempt_errors] == [1, 2]
    assert all(frame("_check_quantity", RAISING_LINE) in e.traceback for e in got.attempt_errors)


async def test_a_cpu_bound_handler_records_the_traceback_of_its_child_process(
    system: System,
) -> None:
    await start(system)
    submitted = await system.stub.SubmitTask(custom("invalid_cpu", quantity=-2))
    task = await wait_terminal(system.stub, submitted.task.id)
    assert task.state == S.TASK_STATE_FAILED and task.error.type == "ValueError"
    traceback = task.error.traceback
    positions = [
        traceback.find(part)
        for part in (frame("invalid_cpu"), frame("_parse_row"), frame("_check_quantity"))
    ]
    assert -1 not in positions and positions == sorted(positions), traceback
    assert traceback.split("\n")[1].endswith(frame("invalid_cpu").rstrip("\n")), traceback
    assert frame("_check_quantity", RAISING_LINE) in traceback
    # The child's own traceback, not the worker's view of the pickled copy, which
    # quotes the child's text as a _RemoteTraceback cause.
    assert "_RemoteTraceback" not in traceback and '"""' not in traceback, traceback
    assert traceback.endswith("ValueError: quantity -2.0 is below zero\n")


@pytest.mark.parametrize("task_type", ["invalid", "invalid_cpu"])
async def test_a_megabyte_message_is_bounded_and_the_task_stored(
    system: System, task_type: str
) -> None:
    await start(system)
    options = S.TaskOptions(max_attempts=1)
    submitted = await system.stub.SubmitTask(
        custom(task_type, options, quantity=-3, odd=True, pad=1_000_000)
    )
    task = await wait_terminal(system.stub, submitted.task.id)
    assert task.state == S.TASK_STATE_FAILED and task.error.type == "ValueError"
    assert len(task.error.message) == MAX_ERROR_CHARS
    traceback = task.error.traceback
    assert len(traceback.encode("utf-8")) <= MAX_TRACEBACK_BYTES
    # The message is cut in its middle, so the frames above it are all kept.
    assert frame("_check_quantity", RAISING_LINE) in traceback
    assert "characters cut ...]" in traceback
    assert "ValueError: quantity \ufffd-3.0 is below zero!!!" in traceback
    assert traceback.endswith("!!!\n")
