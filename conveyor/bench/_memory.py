"""The memory scenario: resident memory of given processes while tasks flow through.

RSS is read from ``/proc/<pid>/status`` (VmRSS, see :mod:`conveyor.bench._proc`). The
workload runs in ten rounds, each waited for, and RSS is sampled after every round and
every SAMPLE_INTERVAL in between: "flat" compares the end with the first round, when
caches and pools are warm.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from conveyor.bench._options import MEMORY, TARGET_GROWTH_PERCENT, TARGET_WORKER_IDLE_MB
from conveyor.bench._proc import role, rss_mb
from conveyor.bench._results import Metric, ScenarioResult
from conveyor.bench._tracking import BenchError, RunContext, submit_batches, verify, wait_finished

SAMPLE_INTERVAL = 0.25
ROUNDS = 10


@dataclass
class Series:
    """The samples of one process."""

    pid: int
    role: str
    idle: float
    rounds: list[float] = field(default_factory=list)
    peak: float = 0.0


async def _sample_peaks(series: list[Series]) -> None:
    while True:
        for s in series:
            with contextlib.suppress(BenchError):
                s.peak = max(s.peak, rss_mb(s.pid))
        await asyncio.sleep(SAMPLE_INTERVAL)


async def memory(ctx: RunContext) -> ScenarioResult:
    """RSS of ``--pid`` processes: idle, after each of ten rounds of tasks, and at peak."""
    result = ScenarioResult(MEMORY)
    count = ctx.options.task_count(MEMORY)
    series = [Series(pid, role(pid), rss_mb(pid)) for pid in ctx.options.pids]
    for s in series:
        s.peak = s.idle
    rounds = min(ROUNDS, count)
    phase = ctx.display.phase(f"{MEMORY}: {count:,} tasks in {rounds} rounds", total=count)
    ids: list[str] = []
    started = time.perf_counter()
    sampler = asyncio.create_task(_sample_peaks(series))
    try:
        for number in range(rounds):
            size = count * (number + 1) // rounds - count * number // rounds
            submission = await submit_batches(ctx, MEMORY, size)
            await wait_finished(ctx, MEMORY, submission.ids, f"{MEMORY}: round {number + 1}")
            ids += submission.ids
            phase.advance(size)
            for s in series:
                s.rounds.append(rss_mb(s.pid))
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    phase.done()
    result.elapsed = time.perf_counter() - started
    outcome = await verify(ctx, MEMORY, ids)
    result.submitted = len(ids)
    result.completed = outcome.completed
    if outcome.not_completed:
        result.notes.append(f"tasks not completed: {outcome.not_completed}")
    for s in series:
        _add_metrics(result, s)
    result.details["rss_mb"] = {
        str(s.pid): {
            "role": s.role,
            "idle": round(s.idle, 1),
            "after_each_round": [round(v, 1) for v in s.rounds],
            "peak": round(max([s.peak, *s.rounds]), 1),
        }
        for s in series
    }
    result.details["tasks_per_round"] = count // rounds
    return result


def _add_metrics(result: ScenarioResult, s: Series) -> None:
    name = f"{s.role}[{s.pid}]"
    first, end = s.rounds[0], s.rounds[-1]
    growth = (end - first) / first * 100.0 if first else 0.0
    idle_target = TARGET_WORKER_IDLE_MB if s.role == "worker" else None
    flat_target = TARGET_GROWTH_PERCENT if s.role in ("worker", "store") else None
    result.metrics += [
        Metric(f"{name} RSS idle", s.idle, "MB", idle_target),
        Metric(f"{name} RSS peak", max([s.peak, *s.rounds]), "MB"),
        Metric(f"{name} RSS end", end, "MB"),
        Metric(f"{name} growth round 1→{len(s.rounds)}", growth, "%", flat_target),
    ]
