"""The submit, throughput and read scenarios of ``conveyor bench``."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.bench._http import TARGET_HTTP_EXTRA_P50, HttpSubmitter
from conveyor.bench._options import (
    READ_LATENCY,
    RUN_LABEL,
    SUBMIT_LATENCY,
    TARGET_BATCH_E2E,
    TARGET_READ_P99,
    TARGET_SUBMIT_P50,
    TARGET_SUBMIT_P99,
    TARGET_UNARY_E2E,
    TARGET_UNARY_SUBMIT_P99,
    THROUGHPUT_BATCH,
    THROUGHPUT_UNARY,
)
from conveyor.bench._proc import CpuMeter
from conveyor.bench._results import Latency, Metric, ScenarioResult, latency_metrics
from conveyor.bench._tracking import (
    BenchError,
    RunContext,
    Submission,
    end_to_end,
    submit_batches,
    verify,
    wait_finished,
)

SAMPLE_IDS = 5_000
"""Task ids read-latency picks GetTask targets from."""
LIST_PAGE_SIZE = 50


def _cpu_meter(ctx: RunContext) -> CpuMeter | None:
    """Starts counting the CPU of the ``--pid`` processes, if any were given."""
    return CpuMeter.begin(ctx.options.pids) if ctx.options.pids else None


async def _finish(
    ctx: RunContext, result: ScenarioResult, submission: Submission, cpu: CpuMeter | None = None
) -> float:
    """Waits for the scenario's tasks, checks them, and fills the counts; returns e2e/s.
    The CPU meter stops when the last task finished, before the check's reads."""
    noticed = await wait_finished(ctx, result.name, submission.ids)
    if cpu is not None:
        cpu.stop()
    outcome = await verify(ctx, result.name, submission.ids)
    result.submitted = len(submission.ids)
    result.completed = outcome.completed
    if outcome.not_completed:
        result.notes.append(f"tasks not completed: {outcome.not_completed}")
    rate, details = end_to_end(submission, outcome, noticed)
    result.elapsed = details["first_submit_to_all_completed_s"]
    result.details.update(details)
    return rate


def _report_cpu(result: ScenarioResult, cpu: CpuMeter | None) -> None:
    """The CPU per completed task of each ``--pid`` process, last in the scenario's table."""
    if cpu is not None:
        cpu.report(result, result.completed)


async def submit_latency(ctx: RunContext) -> ScenarioResult:
    """Unary SubmitTask, one call at a time, on an otherwise idle system; with
    ``--submit-pause``, the system idles that long after each call."""
    result = ScenarioResult(SUBMIT_LATENCY)
    count = ctx.options.task_count(SUBMIT_LATENCY)
    request = ctx.request(SUBMIT_LATENCY)
    pause_ms = ctx.options.submit_pause_ms
    spacing = f", {pause_ms:g} ms idle after each" if pause_ms else ""
    phase = ctx.display.phase(f"{SUBMIT_LATENCY}: submitting one at a time{spacing}", total=count)
    ids: list[str] = []
    seconds: list[float] = []
    over_http: list[float] = []
    http = HttpSubmitter(ctx.options.http_url, request) if ctx.options.http_url else None
    cpu = _cpu_meter(ctx)
    started = time.time()
    try:
        for _ in range(count):
            begin = time.perf_counter()
            task = await ctx.client.submit(request)
            seconds.append(time.perf_counter() - begin)
            ids.append(task.id)
            if http is not None:  # interleaved, so both see the same system at once
                begin = time.perf_counter()
                ids.append(await http.submit())
                over_http.append(time.perf_counter() - begin)
            phase.advance()
            if pause_ms:
                await asyncio.sleep(pause_ms / 1000)
    finally:
        if http is not None:
            await http.close()
    phase.done()
    submission = Submission(ids, started, time.time(), seconds)
    rate = await _finish(ctx, result, submission, cpu)
    latency = Latency.of(seconds)
    result.latencies["submit"] = latency
    result.metrics += latency_metrics(
        "submit", latency, p50=TARGET_SUBMIT_P50, p99=TARGET_SUBMIT_P99, with_p90=True
    )
    if over_http:
        http_latency = Latency.of(over_http)
        result.latencies["http submit"] = http_latency
        result.metrics += latency_metrics("http submit", http_latency, with_p90=True)
        extra = http_latency.p50 - latency.p50
        result.metrics.append(Metric("http - grpc submit p50", extra, "ms", TARGET_HTTP_EXTRA_P50))
    result.metrics.append(Metric("submit rate", submission.rate, "tasks/s"))
    result.metrics.append(Metric("e2e throughput", rate, "tasks/s"))
    result.details["pause_ms"] = pause_ms
    if pause_ms:
        result.notes.append(f"each call followed by {pause_ms:g} ms of idle time")
    _report_cpu(result, cpu)
    return result


async def throughput_batch(ctx: RunContext) -> ScenarioResult:
    """End to end with SubmitTasks batches, one call at a time."""
    result = ScenarioResult(THROUGHPUT_BATCH)
    count = ctx.options.task_count(THROUGHPUT_BATCH)
    phase = ctx.display.phase(
        f"{THROUGHPUT_BATCH}: submitting {ctx.options.batch_size} per call", total=count
    )
    cpu = _cpu_meter(ctx)
    submission = await submit_batches(ctx, THROUGHPUT_BATCH, count, phase)
    phase.done()
    rate = await _finish(ctx, result, submission, cpu)
    result.metrics.append(Metric("e2e throughput", rate, "tasks/s", TARGET_BATCH_E2E))
    result.metrics.append(Metric("submit rate", submission.rate, "tasks/s"))
    calls = Latency.of(submission.call_seconds)
    result.latencies["submit_tasks_call"] = calls
    result.metrics.append(Metric(f"SubmitTasks({ctx.options.batch_size}) p50", calls.p50, "ms"))
    result.details["batch_size"] = ctx.options.batch_size
    _report_cpu(result, cpu)
    return result


async def throughput_unary(ctx: RunContext) -> ScenarioResult:
    """End to end with unary SubmitTask calls, ``--concurrency`` in flight."""
    result = ScenarioResult(THROUGHPUT_UNARY)
    count = ctx.options.task_count(THROUGHPUT_UNARY)
    in_flight = min(ctx.options.concurrency, count)
    request = ctx.request(THROUGHPUT_UNARY)
    phase = ctx.display.phase(f"{THROUGHPUT_UNARY}: {in_flight} calls in flight", total=count)
    ids = [""] * count
    seconds = [0.0] * count
    taken = 0

    async def caller() -> None:
        nonlocal taken
        while taken < count:
            index = taken
            taken += 1
            begin = time.perf_counter()
            task = await ctx.client.submit(request)
            seconds[index] = time.perf_counter() - begin
            ids[index] = task.id
            phase.advance()

    cpu = _cpu_meter(ctx)
    started = time.time()
    await asyncio.gather(*(caller() for _ in range(in_flight)))
    submission = Submission(ids, started, time.time(), seconds)
    phase.done()
    rate = await _finish(ctx, result, submission, cpu)
    latency = Latency.of(seconds)
    result.latencies["submit"] = latency
    result.metrics.append(Metric("e2e throughput", rate, "tasks/s", TARGET_UNARY_E2E))
    result.metrics.append(Metric("submit rate", submission.rate, "tasks/s"))
    result.metrics += latency_metrics("submit under load", latency, p99=TARGET_UNARY_SUBMIT_P99)
    result.details["in_flight"] = in_flight
    _report_cpu(result, cpu)
    return result


async def _time_calls(
    label: str, ctx: RunContext, calls: int, call: Callable[[], Awaitable[Any]]
) -> Latency:
    phase = ctx.display.phase(f"{READ_LATENCY}: {label}", total=calls)
    seconds: list[float] = []
    for _ in range(calls):
        begin = time.perf_counter()
        await call()
        seconds.append(time.perf_counter() - begin)
        phase.advance()
    phase.done()
    return Latency.of(seconds)


async def _sample_ids(ctx: RunContext) -> list[str]:
    ids: list[str] = []
    async for task in ctx.client.iter_tasks(page_size=1000):
        ids.append(task.id)
        if len(ids) >= SAMPLE_IDS:
            break
    return ids


async def read_latency(ctx: RunContext) -> ScenarioResult:
    """GetTask and ListTasks, one call at a time, over the tasks the store holds."""
    result = ScenarioResult(READ_LATENCY)
    client = ctx.client
    if ctx.options.seed:
        phase = ctx.display.phase(f"{READ_LATENCY}: seeding", total=ctx.options.seed)
        submission = await submit_batches(ctx, READ_LATENCY, ctx.options.seed, phase)
        phase.done()
        await _finish(ctx, result, submission)
        result.details["seeded"] = len(submission.ids)
    ids = await _sample_ids(ctx)
    if not ids:
        raise BenchError(f"{READ_LATENCY}: the store holds no tasks to read; pass --seed N")
    pick = random.Random(len(ids)).choice
    reads = ctx.options.reads
    lists = max(1, reads // 5)
    first = await client.list(page_size=LIST_PAGE_SIZE)
    queries: dict[str, Callable[[], Awaitable[Any]]] = {
        "ListTasks first page": lambda: client.list(page_size=LIST_PAGE_SIZE),
        "ListTasks state=completed": lambda: client.list(
            states=[tasks_pb2.TASK_STATE_COMPLETED], page_size=LIST_PAGE_SIZE
        ),
        "ListTasks by label": lambda: client.list(
            labels={RUN_LABEL: ctx.run_id}, page_size=LIST_PAGE_SIZE
        ),
    }
    if first.next_page_token:
        queries["ListTasks next page"] = lambda: client.list(
            page_size=LIST_PAGE_SIZE, page_token=first.next_page_token
        )
    started = time.perf_counter()
    get = await _time_calls("GetTask", ctx, reads, lambda: client.get(pick(ids)))
    result.latencies["GetTask"] = get
    result.metrics += latency_metrics("GetTask", get, p99=TARGET_READ_P99)
    for label, query in queries.items():
        latency = await _time_calls(label, ctx, lists, query)
        result.latencies[label] = latency
        result.metrics += latency_metrics(label, latency, p99=TARGET_READ_P99)[:2]
    result.elapsed = time.perf_counter() - started
    result.details["ids_sampled"] = len(ids)
    result.details["list_page_size"] = LIST_PAGE_SIZE
    result.notes.append(
        "issue 5 sets the read targets for a store of 1,000,000 tasks; "
        "this run read whatever the store held (see --seed)"
    )
    return result
