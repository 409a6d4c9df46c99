"""Failure-rate analysis: outcomes, retry rates, run times, queue waits and frequent errors
of the tasks submitted in a time window, per type.

The rows of the window are read once (only the columns the analysis needs) and summarised
in Python, which keeps the query portable between SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.tasks import duration, timestamp
from store import convert
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

    def add(self, row: Mapping[Any, Any]) -> None:
        state = int(row["state"])
        self.states[state] += 1
        started, ended = row["start_time"], row["end_time"]
        if state in FINISHED:
            if row["attempt"] > 1:
                self.retried += 1
            if started is not None and ended is not None:
                self.run_times.append((ended - started).total_seconds())
        if started is not None and row["attempt"] == 1 and row["attempt_offset"] == 0:
            self.queue_waits.append((started - row["create_time"]).total_seconds())
        for blob in convert.decode_errors(row["attempt_errors"]):
            error = tasks_pb2.TaskError.FromString(blob)
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


async def task_stats(
    engine: AsyncEngine, since: dt.datetime, task_type: str = "", top_errors: int = 5
) -> tasks_pb2.GetTaskStatsResponse:
    """The analysis of tasks created at or after ``since``."""
    query = select(
        tasks.c.type,
        tasks.c.state,
        tasks.c.attempt,
        tasks.c.attempt_offset,
        tasks.c.create_time,
        tasks.c.start_time,
        tasks.c.end_time,
        tasks.c.attempt_errors,
    ).where(tasks.c.create_time >= since)
    if task_type:
        query = query.where(tasks.c.type == task_type)
    tallies: dict[str, _TypeTally] = defaultdict(_TypeTally)
    async with engine.connect() as conn:
        result = await conn.stream(query.execution_options(yield_per=5000))
        async for row in result.mappings():
            tallies[row["type"]].add(row)
    return tasks_pb2.GetTaskStatsResponse(
        types=[tallies[name].to_proto(name, top_errors) for name in sorted(tallies)],
        since=timestamp(since),
    )
