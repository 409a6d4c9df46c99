"""Failure-rate analysis: outcomes, retry rates, run times, queue waits and frequent errors
of the tasks submitted in a time window, per type.

Counts and retry rates are grouped in SQL. Run times and queue waits are exact
nearest-rank percentiles: the database computes each started task's two durations as
whole microseconds, and only those integers are read (no per-row time parsing); errors are
read only from the tasks that have any. Portable between SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, Integer, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.tasks import duration, now, timestamp
from store import rows
from store.models import tasks

FINISHED = (tasks_pb2.TASK_STATE_COMPLETED, tasks_pb2.TASK_STATE_FAILED)
MAX_ERROR_MESSAGE = 300


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def summarise(values: Iterable[float]) -> tasks_pb2.DurationSummary:
    """Count, p50, p95, p99 and max of durations in seconds."""
    ordered = sorted(v for v in values if v >= 0)
    if not ordered:
        return tasks_pb2.DurationSummary()
    return tasks_pb2.DurationSummary(
        count=len(ordered),
        p50=duration(percentile(ordered, 0.50)),
        p95=duration(percentile(ordered, 0.95)),
        p99=duration(percentile(ordered, 0.99)),
        max=duration(ordered[-1]),
    )


@dataclass
class _TypeTally:
    states: Counter[int] = field(default_factory=Counter)
    retried: int = 0
    run_times: list[float] = field(default_factory=list)
    queue_waits: list[float] = field(default_factory=list)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add_times(self, state: int, first_run: bool, run_us: int | None, wait_us: int) -> None:
        """A started task's run time (when it finished) and queue wait (when its first
        attempt ran: later attempts waited for their backoff, not for a worker)."""
        if state in FINISHED and run_us is not None:
            self.run_times.append(run_us / 1_000_000)
        if first_run:
            self.queue_waits.append(wait_us / 1_000_000)

    def add_errors(self, blob: bytes) -> None:
        for error_blob in rows.decode_errors(blob):
            error = tasks_pb2.TaskError.FromString(error_blob)
            self.errors[(error.type, error.message[:MAX_ERROR_MESSAGE])] += 1

    def to_proto(self, task_type: str, top_errors: int) -> tasks_pb2.TypeStats:
        finished = sum(self.states[s] for s in FINISHED)
        completed = self.states[tasks_pb2.TASK_STATE_COMPLETED]
        return tasks_pb2.TypeStats(
            type=task_type,
            total=sum(self.states.values()),
            states=[
                tasks_pb2.StateCount(state=state, count=count)  # type: ignore[arg-type]
                for state, count in sorted(self.states.items())
            ],
            success_rate=completed / finished if finished else 0.0,
            retry_rate=self.retried / finished if finished else 0.0,
            run_time=summarise(self.run_times),
            queue_wait=summarise(self.queue_waits),
            top_errors=[
                tasks_pb2.ErrorCount(type=kind, message=message, count=count)
                for (kind, message), count in self.errors.most_common(top_errors)
            ],
        )


def _micros(dialect: str, later: Any, earlier: Any) -> Any:
    """``later - earlier`` in whole microseconds, computed by the database (exact: no
    floating-point day fractions), so rows come back as plain integers."""
    if dialect == "sqlite":
        # SQLAlchemy stores naive UTC text 'YYYY-MM-DD HH:MM:SS.ffffff' (microseconds
        # always written): whole seconds from strftime, microseconds from the text.
        # strftime gets the text without its fraction: it goes through a julian day
        # rounded to the millisecond, so '…:33.999600' would give second 34.
        def seconds(value: Any) -> Any:
            return cast(func.strftime("%s", func.substr(value, 1, 19)), Integer)

        def micros(value: Any) -> Any:
            return cast(func.substr(value, 21, 6), Integer)

        return (seconds(later) - seconds(earlier)) * 1_000_000 + (micros(later) - micros(earlier))
    return cast(func.extract("epoch", later - earlier) * 1_000_000, BigInteger)


async def _series(
    conn: AsyncConnection,
    since: dt.datetime,
    until: dt.datetime,
    bucket: dt.timedelta,
    scope: list[Any],
) -> list[tasks_pb2.TimeBucket]:
    """Per bucket of ``bucket`` from ``since`` to ``until``: tasks submitted, completed
    and failed in it, counted by the database (two grouped statements), empty ones too.

    Only the window's tasks count, as everywhere in the stats: each statement reads one
    range of a creation-time index, where counting every task that ended in the window
    would scan every finished task ever kept (there is no index on end times, which would
    cost every terminal write)."""
    dialect = conn.dialect.name
    width = bucket // dt.timedelta(microseconds=1)
    start = literal(since, type_=tasks.c.create_time.type)

    def counts(time: Any, *conditions: Any) -> Any:
        # Grouped over a subquery: PostgreSQL would not match a GROUP BY expression that
        # repeats the SELECT's with bound parameters of its own. A task ends after it was
        # created, so the window's tasks need no lower bound on their end time.
        inner = select(
            (_micros(dialect, time, start) // width).label("bucket"), tasks.c.state
        ).where(*scope, tasks.c.create_time >= since, time < until, *conditions)
        rows = inner.subquery()
        return select(rows.c.bucket, rows.c.state, func.count()).group_by(
            rows.c.bucket, rows.c.state
        )

    length = -(-(until - since) // bucket)
    series = [tasks_pb2.TimeBucket(start_time=timestamp(since + i * bucket)) for i in range(length)]
    submitted = counts(tasks.c.create_time)
    finished = counts(tasks.c.end_time, tasks.c.state.in_(FINISHED))
    for index, _, count in await conn.execute(submitted):
        if 0 <= index < length:
            series[index].submitted += count
    for index, state, count in await conn.execute(finished):
        if 0 <= index < length:
            if state == tasks_pb2.TASK_STATE_COMPLETED:
                series[index].completed += count
            else:
                series[index].failed += count
    return series


async def task_stats(
    engine: AsyncEngine,
    since: dt.datetime,
    task_type: str = "",
    top_errors: int = 5,
    namespace: str | None = None,
    bucket: dt.timedelta | None = None,
    until: dt.datetime | None = None,
) -> tasks_pb2.GetTaskStatsResponse:
    """The analysis of tasks created at or after ``since`` (in ``namespace`` when given),
    with a time series of ``bucket`` wide intervals up to ``until`` (now) when asked."""
    scope = []
    if namespace is not None:
        scope.append(tasks.c.namespace == namespace)
    if task_type:
        scope.append(tasks.c.type == task_type)
    window = [tasks.c.create_time >= since, *scope]
    counts = (
        select(tasks.c.type, tasks.c.state, func.count())
        .where(*window)
        .group_by(tasks.c.type, tasks.c.state)
    )
    retried = (
        select(tasks.c.type, func.count())
        .where(*window, tasks.c.state.in_(FINISHED), tasks.c.attempt > 1)
        .group_by(tasks.c.type)
    )
    dialect = engine.dialect.name
    times = select(
        tasks.c.type,
        tasks.c.state,
        (tasks.c.attempt == 1) & (tasks.c.attempt_offset == 0),
        _micros(dialect, tasks.c.end_time, tasks.c.start_time),
        _micros(dialect, tasks.c.start_time, tasks.c.create_time),
    ).where(*window, tasks.c.start_time.is_not(None))
    errors = select(tasks.c.type, tasks.c.attempt_errors).where(
        *window, func.length(tasks.c.attempt_errors) > 0
    )
    tallies: dict[str, _TypeTally] = defaultdict(_TypeTally)
    async with engine.connect() as conn:
        for name, state, count in await conn.execute(counts):
            tallies[name].states[int(state)] = count
        for name, count in await conn.execute(retried):
            tallies[name].retried = count
        result = await conn.stream(times.execution_options(yield_per=20_000))
        async for partition in result.partitions():
            for name, state, first_run, run_us, wait_us in partition:
                tallies[name].add_times(state, bool(first_run), run_us, wait_us)
        result = await conn.stream(errors.execution_options(yield_per=20_000))
        async for partition in result.partitions():
            for name, blob in partition:
                tallies[name].add_errors(blob)
        series = []
        if bucket:
            series = await _series(conn, since, until or now(), bucket, scope)
    return tasks_pb2.GetTaskStatsResponse(
        types=[tallies[name].to_proto(name, top_errors) for name in sorted(tallies)],
        since=timestamp(since),
        series=series,
    )
