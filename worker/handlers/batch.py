"""The ``batch_processing`` task: one operation over many items, chunk by chunk.

The handler is async so that between chunks it can report progress and notice a
cancellation; the per-item work is the plain function :func:`process_chunk`.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.context import TaskContext
from conveyor.errors import NonRetryable, TaskCancelled
from worker.handlers.text import reverse_text, words

DEFAULT_CHUNK_SIZE = 100
INLINE_CHUNK_LIMIT = 2000
"""Chunks up to this many items run on the event loop; bigger ones in a thread, so a
huge chunk cannot stall heartbeats and cancel messages for long."""


@dataclass(frozen=True)
class ItemOutcome:
    """The outcome of one item: its output, or why it failed."""

    index: int
    ok: bool
    output: str = ""
    error: str = ""


class ItemError(ValueError):
    """Raised by an operation when one item cannot be processed; the batch goes on."""


def _preview(item: str, limit: int = 40) -> str:
    """The item quoted for an error message, shortened so errors stay readable."""
    return repr(item if len(item) <= limit else item[:limit] + "…")


def square(item: str) -> str:
    """The item parsed as a number and squared; integers stay integers.

    >>> square("12"), square("1.5"), square(" -3 ")
    ('144', '2.25', '9')
    """
    text = item.strip()
    try:
        integer = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            raise ItemError(f"not a number: {_preview(item)}") from None
        if not math.isfinite(number):
            raise ItemError(f"not a finite number: {_preview(item)}") from None
        result = number * number
        if not math.isfinite(result):
            raise ItemError(f"square of {_preview(item)} is out of range") from None
        return repr(result)
    try:
        return str(integer * integer)
    except ValueError:
        # Python refuses to print integers of more than 4300 digits.
        raise ItemError(f"square of {_preview(item)} is too large") from None


def sha256_hex(item: str) -> str:
    """The hex SHA-256 of the item's UTF-8 bytes."""
    return hashlib.sha256(item.encode("utf-8")).hexdigest()


def word_count(item: str) -> str:
    """The number of words in the item, as a decimal string."""
    return str(len(words(item)))


OPERATIONS: dict[int, Callable[[str], str]] = {
    tasks_pb2.BATCH_OPERATION_UPPERCASE: str.upper,
    tasks_pb2.BATCH_OPERATION_REVERSE: reverse_text,
    tasks_pb2.BATCH_OPERATION_SHA256: sha256_hex,
    tasks_pb2.BATCH_OPERATION_WORD_COUNT: word_count,
    tasks_pb2.BATCH_OPERATION_SQUARE: square,
}
"""BatchOperation value -> the function applied to each item."""


def process_chunk(operation: int, start_index: int, items: list[str]) -> list[ItemOutcome]:
    """Applies ``operation`` to each item; a failing item is reported, not raised.

    ``start_index`` is the position of ``items[0]`` in the whole batch.
    """
    apply = OPERATIONS[operation]
    outcomes: list[ItemOutcome] = []
    for index, item in enumerate(items, start_index):
        try:
            outcomes.append(ItemOutcome(index, ok=True, output=apply(item)))
        except ValueError as exc:  # ItemError, and UnicodeEncodeError on lone surrogates
            outcomes.append(ItemOutcome(index, ok=False, error=str(exc)))
    return outcomes


def _check_operation(operation: int) -> None:
    if operation == tasks_pb2.BATCH_OPERATION_UNSPECIFIED:
        raise NonRetryable("batch_processing: operation must be set")
    if operation not in OPERATIONS:
        raise NonRetryable(f"batch_processing: unsupported operation {operation}")


async def batch_processing(
    ctx: TaskContext, input: tasks_pb2.BatchProcessingInput
) -> tasks_pb2.BatchProcessingResult:
    """Applies one operation to every item, reporting progress after each chunk.

    Raises :class:`~conveyor.errors.TaskCancelled` before the next chunk once the task is
    cancelled, so a cancelled batch stops within one chunk.
    """
    _check_operation(input.operation)
    items = list(input.items)
    total = len(items)
    size = input.chunk_size or DEFAULT_CHUNK_SIZE
    chunk_count = math.ceil(total / size)
    result = tasks_pb2.BatchProcessingResult(total=total)
    loop = asyncio.get_running_loop()
    for number, start in enumerate(range(0, total, size), 1):
        if ctx.cancelled.is_set():
            raise TaskCancelled(f"batch_processing: cancelled after {start} of {total} items")
        chunk = items[start : start + size]
        if len(chunk) > INLINE_CHUNK_LIMIT:
            outcomes = await loop.run_in_executor(
                None, process_chunk, input.operation, start, chunk
            )
        else:
            outcomes = process_chunk(input.operation, start, chunk)
        for outcome in outcomes:
            result.items.add(
                index=outcome.index, ok=outcome.ok, output=outcome.output, error=outcome.error
            )
        succeeded = sum(1 for o in outcomes if o.ok)
        result.succeeded += succeeded
        result.failed += len(outcomes) - succeeded
        result.chunks += 1
        await ctx.progress(start + len(chunk), total, f"chunk {number}/{chunk_count}")
        # Yield even when the progress sink did not, so other tasks on the loop get a turn.
        await asyncio.sleep(0)
    return result
