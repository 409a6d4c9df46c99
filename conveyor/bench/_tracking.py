"""Submitting a scenario's tasks, waiting for them, and checking every one completed.

Waiting must not load the system it measures. It polls one task at a time with GetTask:
probes spread evenly over the submission order, oldest first, so the display can show how
far the run is with a single cheap read every POLL_INTERVAL (more often for the last
probe, whose time is the measurement). Once the last probe is finished, a ListTasks of
unfinished tasks with the run's labels (which first waits until the store has applied
every event published so far) catches any straggler.

End to end means from the first submit to the moment the store shows the last task
COMPLETED, as a client sees it. The latest ``end_time`` (stamped by the worker when it
finished the task) is kept too, as the same run without the store's lag.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Unpack

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.bench._display import Display, Phase
from conveyor.bench._options import NOOP, RUN_LABEL, SCENARIO_LABEL, BenchOptions
from conveyor.client import AsyncClient, OptionArgs, custom
from conveyor.errors import FailedPrecondition, NotFound
from conveyor.tasks import STATE_NAMES, is_terminal

POLL_INTERVAL = 0.05
FINAL_POLL_INTERVAL = 0.01
PROBES = 50
UNFINISHED = (
    tasks_pb2.TASK_STATE_PENDING,
    tasks_pb2.TASK_STATE_SCHEDULED,
    tasks_pb2.TASK_STATE_RUNNING,
    tasks_pb2.TASK_STATE_RETRYING,
)


class BenchError(FailedPrecondition):
    """Raised when a benchmark cannot run, or its tasks do not finish in time."""


@dataclass
class RunContext:
    """What every scenario of one run shares."""

    client: AsyncClient
    options: BenchOptions
    run_id: str
    display: Display

    def labels(self, scenario: str) -> dict[str, str]:
        """The labels of every task ``scenario`` submits in this run."""
        return {RUN_LABEL: self.run_id, SCENARIO_LABEL: scenario}

    def request(self, scenario: str, **opts: Unpack[OptionArgs]) -> tasks_pb2.SubmitTaskRequest:
        """A noop submit request labelled with the run and ``scenario``."""
        merged: OptionArgs = {**opts, "labels": self.labels(scenario)}
        return custom(NOOP, {}, **merged)


@dataclass
class Submission:
    """Tasks a scenario submitted: ids in submission order, wall-clock start and end."""

    ids: list[str]
    started: float
    finished: float
    call_seconds: list[float] = field(default_factory=list)
    """The duration of each submit call."""

    @property
    def rate(self) -> float:
        """Tasks accepted per second."""
        return len(self.ids) / max(self.finished - self.started, 1e-9)


@dataclass(frozen=True)
class Outcome:
    """What the store says about a scenario's tasks once they finished."""

    completed: int
    not_completed: dict[str, int]
    """Counts by state name of tasks that finished otherwise, and "missing" ones."""
    last_end: float | None
    """The latest ``end_time`` (seconds since the epoch) among the tasks."""


async def submit_batches(
    ctx: RunContext,
    scenario: str,
    count: int,
    phase: Phase | None = None,
    **opts: Unpack[OptionArgs],
) -> Submission:
    """Submits ``count`` noop tasks with SubmitTasks, ``--batch-size`` per call, in turn."""
    request = ctx.request(scenario, **opts)
    size = ctx.options.batch_size
    ids: list[str] = []
    calls: list[float] = []
    started = time.time()
    for offset in range(0, count, size):
        batch = [request] * min(size, count - offset)
        begin = time.perf_counter()
        tasks = await ctx.client.submit_many(batch)
        calls.append(time.perf_counter() - begin)
        ids.extend(task.id for task in tasks)
        if phase is not None:
            phase.advance(len(batch))
    return Submission(ids, started, time.time(), calls)


async def _state(client: AsyncClient, task_id: str) -> int | None:
    try:
        task = await client.get(task_id, omit_payloads=True)
    except NotFound:
        return None  # the store has not applied its submit yet
    return int(task.state)


def probe_indexes(count: int, probes: int = PROBES) -> list[int]:
    """Evenly spaced positions in the submission order, ending with the last one."""
    if count <= 0:
        return []
    return sorted({max(0, (count * (i + 1)) // probes - 1) for i in range(probes)} | {count - 1})


async def wait_finished(
    ctx: RunContext, scenario: str, ids: Sequence[str], description: str = ""
) -> float:
    """Waits until every task in ``ids`` is finished; returns when it noticed (wall clock)."""
    phase = ctx.display.phase(description or f"{scenario}: running", total=len(ids))
    deadline = time.monotonic() + ctx.options.timeout

    def check_deadline() -> None:
        if time.monotonic() > deadline:
            raise BenchError(
                f"{scenario}: tasks still unfinished after {ctx.options.timeout:g}s "
                "(is a worker serving noop running?)"
            )

    for index in probe_indexes(len(ids)):
        interval = FINAL_POLL_INTERVAL if index == len(ids) - 1 else POLL_INTERVAL
        while True:
            state = await _state(ctx.client, ids[index])
            if state is not None and is_terminal(state):
                break
            check_deadline()
            await asyncio.sleep(interval)
        phase.update(index + 1)
    labels = ctx.labels(scenario)
    while (await ctx.client.list(states=UNFINISHED, labels=labels, page_size=1)).tasks:
        check_deadline()
        await asyncio.sleep(FINAL_POLL_INTERVAL)
    noticed = time.time()
    phase.done()
    return noticed


async def verify(ctx: RunContext, scenario: str, ids: Sequence[str]) -> Outcome:
    """Lists the scenario's tasks and counts how many of ``ids`` completed."""
    wanted = set(ids)
    states: dict[str, int] = {}
    last_end: float | None = None
    phase = ctx.display.phase(f"{scenario}: checking every task", total=len(wanted))
    async for task in ctx.client.iter_tasks(labels=ctx.labels(scenario), page_size=1000):
        if task.id not in wanted:
            continue
        states[task.id] = task.state
        if task.HasField("end_time"):
            end = task.end_time.ToMicroseconds() / 1e6
            last_end = end if last_end is None else max(last_end, end)
        phase.advance()
    phase.done()
    counts = Counter(STATE_NAMES.get(s, str(s)) for s in states.values())
    completed = counts.pop(STATE_NAMES[tasks_pb2.TASK_STATE_COMPLETED], 0)
    if len(states) < len(wanted):
        counts["missing"] = len(wanted) - len(states)
    return Outcome(completed, dict(counts), last_end)


def end_to_end(
    submission: Submission, outcome: Outcome, noticed: float
) -> tuple[float, dict[str, Any]]:
    """Tasks per second from the first submit until the store showed every task finished,
    and the details (including the rate up to the worker's last ``end_time``)."""
    elapsed = max(noticed - submission.started, 1e-9)
    details: dict[str, Any] = {
        "first_submit_to_all_completed_s": round(elapsed, 4),
        "submit_phase_s": round(submission.finished - submission.started, 4),
        "submit_rate_per_s": round(submission.rate, 1),
    }
    if outcome.last_end is not None and outcome.last_end > submission.started:
        # Only meaningful when the worker's clock is this machine's clock.
        worker_elapsed = outcome.last_end - submission.started
        details["first_submit_to_last_end_time_s"] = round(worker_elapsed, 4)
        details["worker_finished_rate_per_s"] = round(len(submission.ids) / worker_elapsed, 1)
    return len(submission.ids) / elapsed, details
