"""Running a benchmark: check that noop is served, warm up, run each scenario in turn."""

from __future__ import annotations

import datetime as dt
import os
import platform
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from conveyor.bench._baseline import baseline
from conveyor.bench._compare import side_by_side
from conveyor.bench._display import Display
from conveyor.bench._memory import memory
from conveyor.bench._options import (
    BASELINE,
    MEMORY,
    READ_LATENCY,
    SCENARIOS,
    SUBMIT_LATENCY,
    THROUGHPUT_BATCH,
    THROUGHPUT_UNARY,
    WATCH_FANOUT,
    BenchOptions,
)
from conveyor.bench._peers import check_directory, run_peers
from conveyor.bench._proc import cpu_seconds
from conveyor.bench._results import Metric, PeerRun, Report, ScenarioResult
from conveyor.bench._scenarios import (
    read_latency,
    submit_latency,
    throughput_batch,
    throughput_unary,
)
from conveyor.bench._tracking import BenchError, RunContext, submit_batches, wait_finished
from conveyor.bench._watch import watch_fanout
from conveyor.client import AsyncClient
from conveyor.errors import InvalidArgument

WARMUP = "warmup"
WARMUP_UNARY = 50
"""Unary submits of the warm-up, so the channel and the gateway's submit path are warm."""

Scenario = Callable[[RunContext], Awaitable[ScenarioResult]]
RUNNERS: dict[str, Scenario] = {
    SUBMIT_LATENCY: submit_latency,
    THROUGHPUT_BATCH: throughput_batch,
    THROUGHPUT_UNARY: throughput_unary,
    WATCH_FANOUT: watch_fanout,
    READ_LATENCY: read_latency,
    MEMORY: memory,
}
NOT_SERVED_HINT = (
    "the noop task type is not served: start the workers with "
    "`python -m worker --import conveyor.bench.noop` "
    "(for `conveyor dev`: CONVEYOR_WORKER_IMPORTS=conveyor.bench.noop conveyor dev)"
)


def new_run_id() -> str:
    """A run id, readable and unique: UTC time plus random hex."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)


def machine() -> dict[str, Any]:
    """Where the bench ran: CPUs, CPU model, memory, OS and Python."""
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        # Other load on the machine skews every figure: record it with them.
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        meminfo = Path("/proc/meminfo").read_text()
    except OSError:
        return info
    model = next((line for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    info["cpu_model"] = model.partition(":")[2].strip()
    total = next((line for line in meminfo.splitlines() if line.startswith("MemTotal:")), "")
    if total:
        info["memory_mb"] = int(total.split()[1]) // 1024
    return info


async def _warm_up(ctx: RunContext) -> None:
    """Checks noop is served, then runs the warm-up tasks to completion."""
    request = ctx.request(WARMUP)
    try:
        first = await ctx.client.submit(request)
    except InvalidArgument as exc:
        if "unknown task type" in exc.message:
            raise BenchError(NOT_SERVED_HINT) from None
        raise
    ids = [first.id]
    unary = min(WARMUP_UNARY, ctx.options.warmup)
    phase = ctx.display.phase("warming up", total=1 + ctx.options.warmup)
    phase.advance()
    for _ in range(unary):
        ids.append((await ctx.client.submit(request)).id)
        phase.advance()
    if ctx.options.warmup > unary:
        ids += (await submit_batches(ctx, WARMUP, ctx.options.warmup - unary, phase)).ids
    phase.done()
    await wait_finished(ctx, WARMUP, ids, "warming up: waiting for the worker")


def _add_shares(report: Report) -> None:
    """Conveyor's throughput as a share of the raw JetStream ceiling measured in the run."""
    ceiling = report.scenario(BASELINE)
    raw = ceiling.metrics[0].value if ceiling and ceiling.metrics else 0.0
    if raw <= 0:
        return
    for name in (THROUGHPUT_BATCH, THROUGHPUT_UNARY):
        scenario = report.scenario(name)
        e2e = scenario.metric("e2e throughput") if scenario else None
        if scenario is not None and e2e is not None:
            scenario.metrics.append(Metric("share of raw JetStream", e2e.value / raw * 100, "%"))


async def run_bench(options: BenchOptions, like: AsyncClient | None = None) -> Report:
    """Runs the scenarios of ``options`` against the gateway at ``options.addr``, with
    the credentials and namespace of ``like`` when given.

    Raises BenchError when the options are inconsistent, noop is not served, or tasks do
    not finish within ``options.timeout``; gRPC failures raise the SDK's errors.
    """
    problems = options.problems()
    if options.peers_dir:
        problems += check_directory(options.peers_dir)
    if problems:
        raise BenchError("; ".join(problems))
    for pid in options.pids:
        cpu_seconds(pid)  # fails now, not after minutes of measuring, if one is not there
    report = Report(
        run_id=new_run_id(),
        addr=options.addr,
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        machine=machine(),
        options=options.to_dict(),
    )
    async with AsyncClient(options.addr) if like is None else like.clone() as client:
        with Display(options.progress) as display:
            ctx = RunContext(client, options, report.run_id, display)
            peers: PeerRun | None = None
            if options.peers_dir:
                # First, while the system under test is idle.
                peers = await run_peers(options.peers_dir, display)
            if options.baseline:
                # First, on a quiet server: the ceiling the scenarios are compared with.
                report.scenarios.append(await baseline(ctx))
            if options.scenarios:
                await _warm_up(ctx)
            for name in SCENARIOS:
                if name in options.scenarios:
                    report.scenarios.append(await RUNNERS[name](ctx))
    _add_shares(report)
    if peers is not None:
        report.side_by_side = side_by_side(report, peers)
    return report
