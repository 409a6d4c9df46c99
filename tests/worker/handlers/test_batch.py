from __future__ import annotations

import asyncio
import hashlib
from typing import cast

import pytest

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.context import TaskContext
from conveyor.errors import NonRetryable, TaskCancelled
from worker.handlers.batch import (
    INLINE_CHUNK_LIMIT,
    ItemError,
    ItemOutcome,
    batch_processing,
    process_chunk,
    square,
)

Progress = list[tuple[int, int, str]]


class Recorder:
    """A progress sink that records every call, optionally cancelling after a few."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.calls: Progress = []
        self.cancel_after = cancel_after
        self.ctx = TaskContext(
            task_id="t1",
            task_type="batch_processing",
            attempt=1,
            max_attempts=3,
            timeout=60.0,
            _progress=self.record,
        )

    async def record(self, current: int, total: int, message: str) -> None:
        self.calls.append((current, total, message))
        if self.cancel_after is not None and len(self.calls) >= self.cancel_after:
            self.ctx.cancelled.set()


def batch(
    items: list[str], operation: tasks_pb2.BatchOperation, chunk_size: int = 0
) -> tasks_pb2.BatchProcessingInput:
    return tasks_pb2.BatchProcessingInput(items=items, operation=operation, chunk_size=chunk_size)


async def test_reports_progress_after_each_chunk() -> None:
    recorder = Recorder()
    items = [f"item {i}" for i in range(7)]

    result = await batch_processing(
        recorder.ctx, batch(items, tasks_pb2.BATCH_OPERATION_UPPERCASE, chunk_size=3)
    )

    assert recorder.calls == [(3, 7, "chunk 1/3"), (6, 7, "chunk 2/3"), (7, 7, "chunk 3/3")]
    assert [i.output for i in result.items] == [f"ITEM {i}" for i in range(7)]
    assert [i.index for i in result.items] == list(range(7))
    assert (result.total, result.succeeded, result.failed, result.chunks) == (7, 7, 0, 3)


async def test_chunk_size_defaults_to_a_hundred() -> None:
    recorder = Recorder()
    result = await batch_processing(
        recorder.ctx, batch(["x"] * 250, tasks_pb2.BATCH_OPERATION_REVERSE)
    )
    assert result.chunks == 3
    assert [c[0] for c in recorder.calls] == [100, 200, 250]


async def test_square_reports_bad_items_and_keeps_going() -> None:
    recorder = Recorder()
    items = ["12", "1.5", "abc", " -3 ", "", "1e400"]

    result = await batch_processing(recorder.ctx, batch(items, tasks_pb2.BATCH_OPERATION_SQUARE))

    assert [(i.index, i.ok, i.output, i.error) for i in result.items] == [
        (0, True, "144", ""),
        (1, True, "2.25", ""),
        (2, False, "", "not a number: 'abc'"),
        (3, True, "9", ""),
        (4, False, "", "not a number: ''"),
        (5, False, "", "not a finite number: '1e400'"),
    ]
    assert (result.total, result.succeeded, result.failed) == (6, 3, 3)


def test_square_edge_cases() -> None:
    assert square("10000000000000000000") == "100000000000000000000000000000000000000"
    assert square("-0.5") == "0.25"
    with pytest.raises(ItemError, match="out of range"):
        square("1e200")
    with pytest.raises(ItemError, match="not a finite number"):
        square("nan")
    with pytest.raises(ItemError, match="too large"):
        square("9" * 4000)
    with pytest.raises(ItemError, match=r"not a number: 'x{40}…'"):
        square("x" * 100)


def test_process_chunk_numbers_items_from_start_index() -> None:
    outcomes = process_chunk(
        tasks_pb2.BATCH_OPERATION_WORD_COUNT, 40, ["one two", "", "don't stop"]
    )
    assert outcomes == [
        ItemOutcome(40, ok=True, output="2"),
        ItemOutcome(41, ok=True, output="0"),
        ItemOutcome(42, ok=True, output="2"),
    ]


def test_sha256_and_reverse_and_uppercase_handle_unicode() -> None:
    items = ["héllo", ""]
    sha = process_chunk(tasks_pb2.BATCH_OPERATION_SHA256, 0, items)
    assert [o.output for o in sha] == [
        hashlib.sha256("héllo".encode()).hexdigest(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ]
    assert process_chunk(tasks_pb2.BATCH_OPERATION_REVERSE, 0, ["ab👍🏽"])[0].output == "👍🏽ba"
    assert process_chunk(tasks_pb2.BATCH_OPERATION_UPPERCASE, 0, ["straße"])[0].output == "STRASSE"


def test_unencodable_item_fails_alone() -> None:
    outcomes = process_chunk(tasks_pb2.BATCH_OPERATION_SHA256, 0, ["\ud800", "ok"])
    assert not outcomes[0].ok
    assert "surrogate" in outcomes[0].error
    assert outcomes[1].ok


async def test_cancellation_stops_between_chunks() -> None:
    recorder = Recorder(cancel_after=2)

    with pytest.raises(TaskCancelled, match="after 20 of 100 items"):
        await batch_processing(
            recorder.ctx, batch(["1"] * 100, tasks_pb2.BATCH_OPERATION_SQUARE, chunk_size=10)
        )

    assert len(recorder.calls) == 2


async def test_cancelled_before_start_does_no_work() -> None:
    recorder = Recorder()
    recorder.ctx.cancelled.set()
    with pytest.raises(TaskCancelled):
        await batch_processing(recorder.ctx, batch(["a"], tasks_pb2.BATCH_OPERATION_UPPERCASE))
    assert recorder.calls == []


async def test_other_tasks_run_between_chunks() -> None:
    recorder = Recorder()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    background = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    await batch_processing(
        recorder.ctx, batch(["a"] * 50, tasks_pb2.BATCH_OPERATION_UPPERCASE, chunk_size=5)
    )
    background.cancel()

    # The recording sink never yields, so only the handler's own yields let it run.
    assert ticks >= 10


async def test_big_chunks_run_off_the_event_loop_with_the_same_result() -> None:
    recorder = Recorder()
    items = [str(i) for i in range(INLINE_CHUNK_LIMIT * 2 + 1)]

    result = await batch_processing(
        recorder.ctx, batch(items, tasks_pb2.BATCH_OPERATION_SQUARE, chunk_size=len(items))
    )

    assert result.chunks == 1
    assert result.succeeded == len(items)
    assert result.items[-1].output == str((len(items) - 1) ** 2)
    assert recorder.calls == [(len(items), len(items), "chunk 1/1")]


async def test_empty_batch_completes_with_zero_totals() -> None:
    recorder = Recorder()
    result = await batch_processing(recorder.ctx, batch([], tasks_pb2.BATCH_OPERATION_SHA256))
    assert (result.total, result.succeeded, result.failed, result.chunks) == (0, 0, 0, 0)
    assert recorder.calls == []


async def test_unspecified_operation_is_not_retryable() -> None:
    recorder = Recorder()
    with pytest.raises(NonRetryable, match="operation must be set"):
        await batch_processing(recorder.ctx, batch(["a"], tasks_pb2.BATCH_OPERATION_UNSPECIFIED))
    with pytest.raises(NonRetryable, match="unsupported operation 99"):
        await batch_processing(recorder.ctx, batch(["a"], cast(tasks_pb2.BatchOperation, 99)))
