"""Following the EVENTS stream's history: where a new history starts (bisection over the
stream's times), and the cursor moved to it at most once; on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from store.history import TimeFrom, first_newer
from store.repository import TaskRepository
from tests.support.factories import Stream, submitted
from tests.support.parking import completion, parked_count


def stream_of(times: dict[int, int]) -> tuple[list[int], TimeFrom]:
    """A stream holding ``times`` (sequence -> µs), and the time_from over it."""
    asked: list[int] = []

    async def time_from(sequence: int) -> int | None:
        asked.append(sequence)
        later = [s for s in times if s >= sequence]
        return times[min(later)] if later else None

    return asked, time_from


@pytest.mark.parametrize(
    ("times", "after", "expected"),
    [
        ({1: 10, 2: 20, 3: 30}, 30, 4),  # every message applied: the next one is new
        ({1: 10, 2: 20, 3: 30}, 5, 1),  # all newer: a stream made again
        ({1: 10, 2: 20, 3: 30, 4: 40, 5: 50}, 20, 3),  # a backup up to 2, then new ones
        ({1: 10, 2: 20, 5: 50, 6: 60}, 20, 3),  # 3 and 4 deleted: new from them on
        ({1: 10, 2: 20, 3: 20, 4: 40}, 20, 4),  # the same time is not newer
        ({}, 20, 1),  # an empty stream
    ],
)
async def test_the_first_newer_message_is_found(
    times: dict[int, int], after: int, expected: int
) -> None:
    _, time_from = stream_of(times)
    first, last = (min(times), max(times)) if times else (0, 0)
    assert await first_newer(time_from, first, last, after) == expected


async def test_a_large_stream_is_bisected() -> None:
    times = {s: s * 10 for s in range(1, 1_000_001)}
    asked: list[int] = []

    async def exact(sequence: int) -> int | None:
        asked.append(sequence)
        return times.get(sequence)

    assert await first_newer(exact, 1, 1_000_000, 4_000_000) == 400_001
    assert len(asked) <= 21


async def test_an_unknown_time_takes_every_message_as_new() -> None:
    _, time_from = stream_of({3: 30, 4: 40})
    assert await first_newer(time_from, 3, 4, None) == 3


async def test_the_cursor_moves_once_and_the_old_parked_events_go(
    repository: TaskRepository,
) -> None:
    stream = Stream()
    await repository.apply(stream.number(submitted("01jn00000000000000000000h1")), 1_000)
    await repository.apply(stream.number(completion("01jn00000000000000000000h2")), 2_000)
    assert await repository.cursor() == (2, 2_000)
    assert await parked_count(repository.engine) == 1

    assert await repository.rebase((2, 1_999), 0) is None  # moved meanwhile: left alone
    assert await repository.cursor() == (2, 2_000)
    assert await repository.rebase((2, 2_000), 0) == 1
    assert await repository.cursor() == (0, None)
    assert await parked_count(repository.engine) == 0
    assert await repository.rebase((2, 2_000), 0) is None  # a second replica: no-op
    # The new history's first event, at a sequence the old one had, is applied.
    changes = await repository.apply([(1, submitted("01jn00000000000000000000h3"))], 3_000)
    assert [t.id for t in changes] == ["01jn00000000000000000000h3"]
    assert await repository.cursor() == (1, 3_000)
