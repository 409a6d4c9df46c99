"""``conveyor bench`` against the real system in-process, with tiny counts.

These tests check what a run reports and that every task it submitted completed; they
never assert a timing.
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from conveyor.bench import SCENARIOS, BenchError, BenchOptions, Latency, Target, run_bench
from conveyor.bench._baseline import _connect
from conveyor.bench._proc import labels
from conveyor.bench._tracking import probe_indexes
from conveyor.bench.noop import NOOP, register
from conveyor.client import AsyncClient
from conveyor.registry import Registry
from tests.conftest import NatsServer, System

TASKS = 12
WATCHERS = 6
SEED = 7


async def start(system: System, *, serve_noop: bool = True) -> str:
    registry = Registry()
    if serve_noop:
        register(registry)
    await system.start_store()
    await system.start_worker(registry)
    await system.start_gateway()
    assert system.gateway is not None
    return system.gateway.address


def tiny(addr: str, **overrides: object) -> BenchOptions:
    options: dict[str, object] = {
        "addr": addr,
        "tasks": TASKS,
        "batch_size": 5,
        "concurrency": 4,
        "watchers": WATCHERS,
        "reads": 10,
        "warmup": 3,
        "timeout": 60.0,
        "progress": False,
    }
    options.update(overrides)
    return BenchOptions(**options)  # type: ignore[arg-type]


def test_percentiles_are_nearest_rank() -> None:
    latency = Latency.of([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert (latency.count, latency.p50, latency.p90, latency.p99, latency.max) == (
        100,
        50.0,
        90.0,
        99.0,
        100.0,
    )
    assert Latency.of([0.002]).p99 == 2.0


def test_probes_are_spread_and_end_with_the_last_task() -> None:
    assert probe_indexes(1) == [0]
    probes = probe_indexes(10_000)
    assert probes[-1] == 9_999 and len(probes) == 50 and probes == sorted(set(probes))
    assert probe_indexes(3) == [0, 1, 2]


def test_targets() -> None:
    assert Target("<=", 3.0).met(3.0) and not Target("<=", 3.0).met(3.1)
    assert Target(">=", 1500.0).met(1500.0) and not Target(">=", 1500.0).met(1499.0)


@pytest.mark.integration
async def test_noop_is_refused_unless_a_worker_serves_it(system: System) -> None:
    addr = await start(system, serve_noop=False)
    assert system.workers[0].registry.get(NOOP) is None
    with pytest.raises(BenchError, match=r"conveyor\.bench\.noop"):
        await run_bench(tiny(addr, scenarios=("submit-latency",)))


@pytest.mark.integration
async def test_every_scenario_reports_and_every_task_completes(system: System) -> None:
    addr = await start(system)
    options = tiny(
        addr,
        scenarios=SCENARIOS,
        seed=SEED,
        pids=(os.getpid(),),
        baseline=True,
        nats_url=system.common.nats_url,
    )
    report = await run_bench(options)

    assert [s.name for s in report.scenarios] == ["baseline", *SCENARIOS]
    assert report.counts_exact
    submitted = {s.name: (s.submitted, s.completed) for s in report.scenarios}
    assert submitted == {
        "baseline": (0, 0),
        "submit-latency": (TASKS, TASKS),
        "throughput-batch": (TASKS, TASKS),
        "throughput-unary": (TASKS, TASKS),
        "watch-fanout": (WATCHERS, WATCHERS),
        "read-latency": (SEED, SEED),
        "memory": (TASKS, TASKS),
    }
    by_name = {s.name: s for s in report.scenarios}
    assert by_name["submit-latency"].latencies["submit"].count == TASKS
    assert by_name["throughput-unary"].latencies["submit"].count == TASKS
    for name in ("throughput-batch", "throughput-unary"):
        scenario = by_name[name]
        assert scenario.metric("e2e throughput") is not None
        assert scenario.metric("share of raw JetStream") is not None
    watch = by_name["watch-fanout"]
    assert watch.details["updates_missed"] == 0
    assert watch.details["watchers_out_of_order"] == 0
    assert watch.details["watchers_ending_completed"] == WATCHERS
    # Each watcher saw its task go from SCHEDULED to at least RUNNING and COMPLETED.
    assert watch.details["updates_delivered"] >= 2 * WATCHERS
    assert watch.latencies["event_to_watcher"].count == watch.details["updates_delivered"]
    reads = by_name["read-latency"]
    assert reads.latencies["GetTask"].count == 10
    assert {"GetTask", "ListTasks first page", "ListTasks by label"} <= set(reads.latencies)
    memory = by_name["memory"].details["rss_mb"][str(os.getpid())]
    assert len(memory["after_each_round"]) == 10
    # The CPU of the --pid processes (here the test's own) per task of each throughput run.
    [me] = labels([os.getpid()]).values()
    for name in ("submit-latency", "throughput-batch", "throughput-unary"):
        cpu = by_name[name].details["cpu"]
        assert cpu["tasks"] == TASKS and cpu["pids"] == {me: os.getpid()}
        assert set(cpu["ms_per_task"]) == {
            me,
            "all listed processes",
            "bench client",
            "whole machine",
        }
        assert by_name[name].metric(f"CPU/task {me}") is not None
    assert by_name["submit-latency"].metric("e2e throughput") is not None

    # Every task carries the run's label: the store holds exactly what the run submitted.
    async with AsyncClient(addr) as client:
        labelled = [t async for t in client.iter_tasks(labels={"bench_run": report.run_id})]
    warmup = 1 + options.warmup
    assert len(labelled) == sum(s.submitted for s in report.scenarios) + warmup
    assert {t.type for t in labelled} == {NOOP}

    document = json.loads(json.dumps(report.to_dict()))
    assert document["counts_exact"] is True
    assert [s["name"] for s in document["scenarios"]] == ["baseline", *SCENARIOS]
    for scenario in document["scenarios"]:
        assert set(scenario) >= {"name", "submitted", "completed", "metrics", "latency_ms"}
        for metric in scenario["metrics"]:
            assert set(metric) == {"name", "value", "unit", "target", "met"}


@pytest.mark.integration
async def test_cli_prints_one_json_document(
    system: System, capsys: pytest.CaptureFixture[str]
) -> None:
    from conveyor.cli import main

    addr = await start(system)
    argv = ["--json", "bench", "--addr", addr, "--scenario", "throughput-batch"]
    argv += ["--scenario", "submit-latency", "--submit-pause", "20"]
    argv += ["--tasks", str(TASKS), "--batch-size", "5", "--warmup", "2"]
    assert await asyncio.to_thread(main, argv) == 0
    document = json.loads(capsys.readouterr().out)
    latency, batch = document["scenarios"]
    assert batch["name"] == "throughput-batch"
    assert (batch["submitted"], batch["completed"]) == (TASKS, TASKS)
    assert document["options"]["batch_size"] == 5
    assert latency["name"] == "submit-latency"
    assert (latency["submitted"], latency["completed"]) == (TASKS, TASKS)
    assert document["options"]["submit_pause_ms"] == 20
    assert latency["details"]["pause_ms"] == 20
    # Each call was followed by 20 ms of idle time: at most 50 submits a second.
    rate = {m["name"]: m["value"] for m in latency["metrics"]}["submit rate"]
    assert rate <= 1000 / 20


@pytest.mark.integration
async def test_cli_prints_a_table(system: System, capsys: pytest.CaptureFixture[str]) -> None:
    from conveyor.cli import main

    addr = await start(system)
    argv = ["bench", "--addr", addr, "--scenario", "submit-latency", "--tasks", "5"]
    assert await asyncio.to_thread(main, [*argv, "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert "submit-latency" in out and "5 / 5" in out and "submit p99" in out


def test_memory_without_pids_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from conveyor.cli import main

    assert main(["bench", "--addr", "127.0.0.1:1", "--scenario", "memory"]) == 2
    assert "--pid" in capsys.readouterr().err


@pytest.mark.parametrize("pause", ["-1", "10001", "nan", "inf"])
def test_a_submit_pause_out_of_range_is_a_usage_error(
    pause: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from conveyor.cli import main

    argv = ["bench", "--addr", "127.0.0.1:1", "--scenario", "submit-latency"]
    assert main([*argv, "--submit-pause", pause]) == 2
    assert "--submit-pause must be from 0 to 10,000 ms" in capsys.readouterr().err


def test_a_submit_pause_that_is_not_a_number_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from conveyor.cli import main

    assert main(["bench", "--addr", "127.0.0.1:1", "--submit-pause", "ten"]) == 2
    assert "argument --submit-pause: invalid float value: 'ten'" in capsys.readouterr().err


async def test_http_submits_are_timed_beside_grpc_in_the_same_run(system: System) -> None:
    registry = Registry()
    register(registry)
    await system.start_store()
    await system.start_worker(registry)
    await system.start_gateway(http_listen="127.0.0.1:0")
    assert system.gateway is not None
    url = f"http://{system.gateway.http.address}"
    scenarios = ("submit-latency", "watch-fanout")
    options = tiny(system.gateway.address, scenarios=scenarios, http_url=url)
    [result, fanout] = (await run_bench(options)).scenarios
    assert (result.submitted, result.completed) == (2 * TASKS, 2 * TASKS)
    assert result.latencies["submit"].count == result.latencies["http submit"].count == TASKS
    assert "http - grpc submit p50" in [m.name for m in result.metrics]
    # Every SSE watcher saw its task to the end, in order, missing nothing; so did the gRPC
    # watchers of the same run's fan-out, timed beside them.
    assert (fanout.submitted, fanout.completed) == (2 * WATCHERS, 2 * WATCHERS)
    for side in ("", "grpc_"):
        assert fanout.details[f"{side}watchers_ending_completed"] == WATCHERS
        assert fanout.details[f"{side}updates_missed"] == 0
        assert fanout.details[f"{side}watchers_out_of_order"] == 0
    assert fanout.latencies["grpc_event_to_watcher"].count >= 2 * WATCHERS
    assert fanout.latencies["event_to_watcher"].count >= 2 * WATCHERS
    assert "Server-Sent Events" in " ".join(fanout.notes)


@pytest.mark.integration
async def test_the_baseline_says_why_a_nats_with_users_refuses_it(secure_nats: NatsServer) -> None:
    with pytest.raises(BenchError, match=r"takes only its users.*scripts/bench"):
        await _connect(secure_nats.url, "conveyor-bench-producer")
