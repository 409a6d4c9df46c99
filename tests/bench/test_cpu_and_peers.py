"""CPU per task from /proc, and the side-by-side table with the peers harness.

The CPU tests measure a real child process that burns a known amount of CPU and compare
/proc's account with the child's own; the peers tests run a stand-in harness (a shell
script writing the files the real one writes), so no Redis, Celery or taskiq is needed.
Nothing here asserts a timing.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from conveyor.bench import BenchError, BenchOptions, Metric, Report, ScenarioResult, run_bench
from conveyor.bench._compare import side_by_side
from conveyor.bench._display import Display, print_report
from conveyor.bench._peers import DEFAULT_PEERS, parse_floor, run_peers
from conveyor.bench._proc import (
    BENCH,
    LISTED,
    MACHINE,
    CpuMeter,
    cpu_seconds,
    labels,
    parse_stat_cpu,
)
from conveyor.bench._results import PeerRow, PeerRun

# Burns CPU (user time) until its own account reaches the amount read from stdin, prints
# that account, and waits for the next amount; an empty line ends it.
BURNER = textwrap.dedent(
    """
    import os, sys
    def used():
        t = os.times()
        return t.user + t.system
    for line in sys.stdin:
        if not line.strip():
            break
        goal = used() + float(line)
        while used() < goal:
            sum(range(1000))
        print(used(), flush=True)
    """
)
TICK = 1 / os.sysconf("SC_CLK_TCK")


class Burner:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", BURNER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.burn(0.0)  # running the script: /proc shows its command line only once it runs

    @property
    def pid(self) -> int:
        return self.process.pid

    def burn(self, seconds: float) -> float:
        """Has the child burn ``seconds`` of CPU; returns its own total account."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{seconds}\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline())

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("\n")
        self.process.stdin.close()
        self.process.wait(30)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def burner() -> Iterator[Burner]:
    child = Burner()
    try:
        yield child
    finally:
        child.stop()


def test_proc_reports_the_cpu_a_child_process_burned(burner: Burner) -> None:
    own = burner.burn(0.3)
    # /proc counts in clock ticks; the child's own account (os.times) is the same counter.
    assert cpu_seconds(burner.pid) == pytest.approx(own, abs=2 * TICK)
    assert own >= 0.3


def test_the_stat_line_is_read_past_a_command_name_with_spaces_and_parentheses() -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    fields = ["S", "1", "2", "3", "0", "-1", "4194560", "10", "0", "0", "0"]
    stat = f"4242 (a) (b c) {' '.join(fields)} {3 * ticks} {ticks} 0 0 20 0 1 0\n"
    assert parse_stat_cpu(stat) == 4.0


def test_cpu_per_task_of_each_process_in_the_window(burner: Burner) -> None:
    meter = CpuMeter.begin([burner.pid])
    before = cpu_seconds(burner.pid)
    after = burner.burn(0.5)
    meter.stop()
    burner.burn(0.2)  # after the window: not counted
    result = ScenarioResult("throughput-batch", submitted=100, completed=100)
    meter.report(result, tasks=100)

    name = labels([burner.pid])[burner.pid]
    cpu = result.details["cpu"]
    assert cpu["tasks"] == 100 and cpu["pids"] == {name: burner.pid}
    assert cpu["seconds"][name] == pytest.approx(after - before, abs=2 * TICK)
    assert cpu["ms_per_task"][name] == pytest.approx((after - before) * 10, abs=2 * TICK * 10)
    assert cpu["seconds"][LISTED] == cpu["seconds"][name]
    # The machine's busy time includes the child's; this process's own is counted apart.
    assert cpu["seconds"][MACHINE] >= cpu["seconds"][LISTED] - 2 * TICK
    assert cpu["seconds"][BENCH] >= 0
    metric = result.metric(f"CPU/task {name}")
    assert metric is not None and metric.unit == "ms"
    assert metric.value == pytest.approx(cpu["ms_per_task"][name], abs=1e-3)


def test_processes_of_one_role_are_told_apart_by_pid() -> None:
    children = [Burner(), Burner()]
    try:
        names = labels([c.pid for c in children])
        assert len(set(names.values())) == 2
        assert all(names[c.pid].endswith(f"[{c.pid}]") for c in children)
        assert labels([os.getpid()])[os.getpid()].startswith("python")
    finally:
        for child in children:
            child.stop()


def test_a_process_gone_before_the_end_is_left_out_and_noted() -> None:
    child = Burner()
    pids = [child.pid, os.getpid()]
    names = labels(pids)
    meter = CpuMeter.begin(pids)
    child.stop()
    result = ScenarioResult("throughput-unary", submitted=10, completed=10)
    meter.report(result, tasks=10)
    assert result.notes == [f"gone before the end, left out of CPU per task: {[names[child.pid]]}"]
    assert result.details["cpu"]["pids"] == {names[pid]: pid for pid in pids}
    assert set(result.details["cpu"]["ms_per_task"]) == {names[os.getpid()], LISTED, BENCH, MACHINE}


async def test_a_pid_that_is_not_running_is_refused_before_anything_runs() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with pytest.raises(BenchError, match=f"CPU time of process {child.pid}"):
        await run_bench(BenchOptions(addr="127.0.0.1:1", pids=(child.pid,), progress=False))


@pytest.mark.parametrize("pid", ["0", "-5"])
def test_a_pid_below_one_is_a_usage_error(pid: str, capsys: pytest.CaptureFixture[str]) -> None:
    from conveyor.cli import main

    assert main(["bench", "--addr", "127.0.0.1:1", f"--pid={pid}"]) == 2
    assert f"--pid {pid} is not a process id" in capsys.readouterr().err


def test_pids_alone_add_cpu_figures_not_the_memory_scenario() -> None:
    from conveyor.bench import DEFAULT_SCENARIOS
    from conveyor.cli.bench import options_from_args
    from conveyor.cli.parser import build_parser

    args = build_parser().parse_args(["bench", "--pid", "12", "34", "--peers", "/tmp/peers"])
    options = options_from_args(args, "127.0.0.1:1")
    assert options.scenarios == DEFAULT_SCENARIOS and options.pids == (12, 34)
    assert options.peers_dir == "/tmp/peers"


# The peers side.

FLOOR_OUTPUT = "sequential: p50 0.530 ms  p99 0.810 ms  rate 1826/s\n64 in flight: 5291 calls/s\n"


def test_the_floor_is_read_from_what_grpc_floor_prints() -> None:
    floor = parse_floor(FLOOR_OUTPUT)
    assert (floor.p50, floor.p99, floor.rate) == (0.53, 0.81, 1826.0)
    assert (floor.in_flight, floor.in_flight_rate) == (64, 5291.0)
    with pytest.raises(BenchError, match="printed no figures"):
        parse_floor("Traceback (most recent call last):\n  OSError: address in use")


def _scenario(name: str, completed: int, **metrics: float) -> ScenarioResult:
    result = ScenarioResult(name, submitted=completed, completed=completed)
    units = {"e2e throughput": "tasks/s", "updates missed": ""}
    result.metrics = [Metric(k, v, units.get(k, "ms")) for k, v in metrics.items()]
    return result


def _report() -> Report:
    report = Report("run", "127.0.0.1:1", "now", {}, {})
    one = _scenario(
        "submit-latency", 2000, **{"submit p50": 0.75, "submit p99": 1.5, "e2e throughput": 1200}
    )
    one.metrics.append(Metric(f"CPU/task {LISTED}", 1.6, "ms"))
    unary = _scenario(
        "throughput-unary",
        10000,
        **{
            "e2e throughput": 2000,
            "submit under load p50": 30.0,
            "submit under load p99": 70.0,
        },
    )
    unary.details["in_flight"] = 64
    batch = _scenario("throughput-batch", 10000, **{"e2e throughput": 4500})
    batch.details["batch_size"] = 500
    watch = _scenario("watch-fanout", 0, **{"event→watcher p99": 80.0, "updates missed": 0})
    watch.details["watchers"] = 10000
    report.scenarios = [one, batch, unary, watch]
    return report


def _peers() -> PeerRun:
    def row(peer: str, name: str, e2e: float | None) -> PeerRow:
        data = {"peer": name, "e2e_per_s": e2e, "submit_p50_ms": 0.6, "submit_p99_ms": 0.9}
        return PeerRow.of(peer, data)

    return PeerRun(
        "/tmp/peers",
        rows=[
            row("celery_redis_stateful", "celery (solo)", 600.0),
            row("celery_redis_stateful", "celery (prefork2)", 790.0),
            row("taskiq_nats_stateful", "taskiq (result backend)", 2090.0),
            row("taskiq_nats_batch256", "taskiq (batch 256)", 3194.0),
        ],
        floor=parse_floor(FLOOR_OUTPUT),
    )


def test_each_target_is_a_ratio_to_a_figure_of_the_same_run() -> None:
    side = side_by_side(_report(), _peers())
    found = {(c.goal, c.reference): c for c in side.comparisons}
    p50 = found["unary submit p50, one at a time", "bare gRPC call p50"]
    assert p50.value == pytest.approx(0.75 / 0.53) and p50.met is True
    p99 = found["unary submit p99, one at a time", "bare gRPC call p99"]
    assert p99.value == pytest.approx(1.5 / 0.81) and p99.met is False
    # Celery is judged by its faster pool.
    celery = found["e2e, unary one at a time", "celery (prefork2) e2e"]
    assert celery.reference_value == 790.0 and celery.met is True
    floor = found["e2e, unary one at a time", "bare gRPC call rate"]
    assert floor.value == pytest.approx(1200 / 1826) and floor.met is True
    unary = found["e2e, unary 64 in flight", "bare gRPC call, 64 in flight rate"]
    assert unary.value == pytest.approx(2000 / 5291) and unary.met is False
    spread = found["submit p99, unary 64 in flight", "its own p50"]
    assert spread.value == pytest.approx(70 / 30) and spread.met is False
    assert found["e2e, SubmitTasks of 500", "taskiq (result backend) e2e"].met is True
    assert found["e2e, SubmitTasks of 500", "taskiq (batch 256) e2e"].met is False
    watch = found["watch, 10,000 watchers: event→watcher p99", ""]
    assert watch.value == 80.0 and watch.met is True
    assert found["watch, 10,000 watchers: updates missed", ""].met is True
    assert side.met == 6 and len(side.comparisons) == 10

    conveyor = {s.name: s for s in side.systems if s.name.startswith("Conveyor")}
    one = conveyor["Conveyor, unary SubmitTask one at a time"]
    assert (one.e2e, one.submit_p50, one.cpu_ms_per_task) == (1200, 0.75, 1.6)
    assert {"celery (solo)", "bare grpc.aio call, 64 in flight"} <= {s.name for s in side.systems}


def test_a_peer_that_reported_nothing_leaves_its_targets_undecided() -> None:
    peers = _peers()
    peers.rows = [r for r in peers.rows if r.peer != "taskiq_nats_stateful"]
    peers.floor = None
    side = side_by_side(_report(), peers)
    undecided = {c.reference for c in side.comparisons if c.met is None}
    assert "taskiq_nats_stateful e2e (not measured)" in undecided
    assert "bare gRPC call p50" in undecided


def test_the_tables_show_every_target_with_its_ratio_and_verdict() -> None:
    report = _report()
    report.side_by_side = side_by_side(report, _peers())
    out = io.StringIO()
    print_report(Console(file=out, width=200), report)
    text = out.getvalue()
    assert "6 of 10 met" in text
    assert "celery (prefork2) e2e" in text and "1.42x" in text and "<= 1.5x" in text
    assert "bare grpc.aio call, one at a time" in text and "1,826" in text
    assert text.count("✓") >= 6 and text.count("✗") == 4
    document = json.loads(json.dumps(report.to_dict()))
    assert document["side_by_side"]["met"] == 6
    assert document["side_by_side"]["peers"]["floor"]["in_flight_rate"] == 5291.0


FAKE_HARNESS = """\
#!/usr/bin/env bash
# Stands in for the peers harness: writes what run_all.sh leaves in .logs.
set -eu
d=".logs/$(date +%Y%m%d-%H%M%S)/run1"
mkdir -p "$d"
echo '{"peer": "celery (solo)", "e2e_per_s": 600, "submit_p50_ms": 0.6}' >"$d/$1.stdout"
echo "not JSON: a log line" >>"$d/$1.stdout"
printf '{"peer": "runs %s of %s", "e2e_per_s": 2000}\\n' "$RUNS" "$PEERS" \
  >"$d/taskiq_nats_stateful.stdout"
echo "| run | peer |"
"""


def _harness(tmp_path: Path, peer: str = "celery_redis_stateful") -> Path:
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)
    (tmp_path / "run_all.sh").write_text(FAKE_HARNESS.replace("$1", peer))
    (tmp_path / "grpc_floor.py").write_text(f"print({FLOOR_OUTPUT!r})\n")
    return tmp_path


async def test_the_harness_runs_once_and_its_rows_are_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PEERS", raising=False)
    monkeypatch.setenv("RUNS", "3")
    run = await run_peers(str(_harness(tmp_path)), Display(False))
    names = {r.peer: r.name for r in run.rows}
    assert names["celery_redis_stateful"] == "celery (solo)"
    assert names["taskiq_nats_stateful"] == f"runs 1 of {' '.join(DEFAULT_PEERS)}"
    assert run.missing == ["taskiq_nats_batch256"]
    assert run.floor is not None and run.floor.in_flight_rate == 5291.0
    assert Path(run.log_dir).parent == tmp_path / ".logs"


async def test_a_harness_not_set_up_or_missing_is_refused(tmp_path: Path) -> None:
    harness = _harness(tmp_path / "set-up")
    (harness / ".venv" / "bin" / "python").unlink()
    with pytest.raises(BenchError, match=r"setup\.sh once"):
        await run_peers(str(harness), Display(False))
    with pytest.raises(BenchError, match=r"no run_all\.sh or grpc_floor\.py there"):
        await run_bench(BenchOptions(addr="127.0.0.1:1", peers_dir=str(tmp_path / "none")))
