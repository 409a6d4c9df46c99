"""Failure-rate analysis on both databases: counts grouped in SQL, and run times and queue
waits computed by the database to the microsecond (across second boundaries too)."""

from __future__ import annotations

import datetime as dt
import math

from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.tasks import from_timestamp
from store.repository import TaskRepository
from store.stats import task_stats
from tests.support.factories import T0, Stream, at, error, submitted, text_result, worker_event

A, B, C, D = (f"01jn00000000000000000000d{n}" for n in range(1, 5))


def _events() -> list[events_pb2.TaskEvent]:
    done = events_pb2.Completed(result=text_result(words=1))
    retrying = events_pb2.Retrying(error=error(1, "flaky", at(2)))
    retrying.next_attempt_time.FromDatetime(at(2.5))
    return [
        # A: starts at .123456 and ends at .023456 of the next second: 0.9 s.
        submitted(A),
        worker_event(A, at(1), 1, started=events_pb2.Started()),
        worker_event(A, at(1.9), 1, completed=done),
        # B: runs for one microsecond, after waiting 1.500001 s.
        submitted(B, created=at(0.5)),
        worker_event(B, at(2.000001), 1, started=events_pb2.Started()),
        worker_event(B, at(2.000002), 1, completed=done),
        # C: a retry, so it counts as retried and its later start is no queue wait.
        submitted(C, created=at(0.25)),
        worker_event(C, at(1), 1, started=events_pb2.Started()),
        worker_event(C, at(2), 1, retrying=retrying),
        worker_event(C, at(3), 2, started=events_pb2.Started()),
        worker_event(C, at(3.25), 2, failed=events_pb2.Failed(error=error(2, "broken", at(3)))),
        # D: never started.
        submitted(D, created=at(0.75)),
    ]


def _seconds(value: tasks_pb2.Task, start: str, end: str) -> float:
    later = from_timestamp(getattr(value, end))
    earlier = from_timestamp(getattr(value, start))
    return (later - earlier).total_seconds()


def _nearest_rank(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


async def test_stats_count_states_and_time_runs_and_waits_exactly(
    repository: TaskRepository,
) -> None:
    await repository.apply(Stream().number(*_events()))
    tasks = {i: await repository.get(i) for i in (A, B, C)}
    runs = [_seconds(t, "start_time", "end_time") for t in tasks.values() if t is not None]
    assert runs[:2] == [0.9, 0.000001]

    stats = await task_stats(repository.engine, T0 - dt.timedelta(hours=1))

    [typed] = stats.types
    assert typed.type == "text_processing" and typed.total == 4
    assert [(s.state, s.count) for s in typed.states] == [
        (tasks_pb2.TASK_STATE_PENDING, 1),
        (tasks_pb2.TASK_STATE_COMPLETED, 2),
        (tasks_pb2.TASK_STATE_FAILED, 1),
    ]
    assert (typed.success_rate, typed.retry_rate) == (2 / 3, 1 / 3)
    assert typed.run_time.count == 3
    for name in ("p50", "p95", "p99"):
        fraction = int(name[1:]) / 100
        got = getattr(typed.run_time, name).ToMicroseconds()
        assert got == round(_nearest_rank(runs, fraction) * 1_000_000), name
    assert typed.run_time.max.ToMicroseconds() == round(max(runs) * 1_000_000)
    # Queue waits of first attempts only (A: 1 s, B: 1.500001 s); C's retry is left out.
    assert typed.queue_wait.count == 2
    assert typed.queue_wait.p50.ToMicroseconds() == 1_000_000
    assert typed.queue_wait.max.ToMicroseconds() == 1_500_001
    assert sorted((e.message, e.count) for e in typed.top_errors) == [
        ("broken", 1),
        ("flaky", 1),
    ]


async def test_stats_of_an_empty_window(repository: TaskRepository) -> None:
    await repository.apply(Stream().number(*_events()))
    stats = await task_stats(repository.engine, T0 + dt.timedelta(hours=1))
    assert list(stats.types) == []


async def test_stats_time_runs_that_start_or_end_in_the_last_half_millisecond_of_a_second(
    repository: TaskRepository,
) -> None:
    # SQLite's strftime rounds to the millisecond: '...:00.999600' would read as second 1
    # unless the whole seconds are taken from the text without its fraction.
    done = events_pb2.Completed(result=text_result(words=1))
    late = 0.876144  # T0 is at .123456 of its second, so T0 + late is at .999600
    await repository.apply(
        Stream().number(
            # A starts at .999600 and ends 500 µs later, in the next second.
            submitted(A),
            worker_event(A, at(late), 1, started=events_pb2.Started()),
            worker_event(A, at(late + 0.0005), 1, completed=done),
            # B starts 300 µs into the next second and ends at .999999 of it.
            submitted(B),
            worker_event(B, at(late + 0.0007), 1, started=events_pb2.Started()),
            worker_event(B, at(late + 1.000399), 1, completed=done),
        )
    )
    stats = await task_stats(repository.engine, T0 - dt.timedelta(hours=1))
    [typed] = stats.types
    run_time, queue_wait = typed.run_time, typed.queue_wait
    assert run_time.count == 2
    assert (run_time.p50.ToMicroseconds(), run_time.max.ToMicroseconds()) == (500, 999_699)
    assert queue_wait.count == 2
    assert (queue_wait.p50.ToMicroseconds(), queue_wait.max.ToMicroseconds()) == (
        876_144,
        876_844,
    )


def _series(stats: tasks_pb2.GetTaskStatsResponse) -> list[tuple[float, int, int, int]]:
    return [
        ((from_timestamp(b.start_time) - T0).total_seconds(), b.submitted, b.completed, b.failed)
        for b in stats.series
    ]


async def test_the_series_counts_submits_and_outcomes_per_bucket(
    repository: TaskRepository,
) -> None:
    await repository.apply(Stream().number(*_events()))
    second = dt.timedelta(seconds=1)
    stats = await task_stats(repository.engine, T0, bucket=second, until=at(5))
    # Submitted by create time (all four in the first second); completed and failed by end
    # time: A at 1.9, B at 2.000002 (a microsecond into its bucket), C failed at 3.25.
    assert _series(stats) == [
        (0.0, 4, 0, 0),
        (1.0, 0, 1, 0),
        (2.0, 0, 1, 0),
        (3.0, 0, 0, 1),
        (4.0, 0, 0, 0),
    ]
    # Only the window's tasks count: from 0.5 s, B and D (A completed at 1.9 and C failed
    # at 3.25 in the window, but were submitted before it).
    later = await task_stats(repository.engine, at(0.5), bucket=second, until=at(3.5))
    assert _series(later) == [(0.5, 2, 0, 0), (1.5, 0, 1, 0), (2.5, 0, 0, 0)]
    # The type filter applies to the series; no bucket asked for, no series.
    other = await task_stats(repository.engine, T0, "batch_processing", bucket=second, until=at(2))
    assert _series(other) == [(0.0, 0, 0, 0), (1.0, 0, 0, 0)]
    assert not (await task_stats(repository.engine, T0)).series
