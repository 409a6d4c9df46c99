"""The knobs of a benchmark run, its scenarios, and the targets of issue 5."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from conveyor.bench._results import Target
from conveyor.config import DEFAULT_NATS_URL

NOOP = "noop"
"""The task type every scenario submits (served by workers importing conveyor.bench.noop)."""
RUN_LABEL = "bench_run"
"""Label holding the run id on every task a run submits."""
SCENARIO_LABEL = "bench_scenario"
"""Label holding the scenario that submitted the task."""

SUBMIT_LATENCY = "submit-latency"
THROUGHPUT_BATCH = "throughput-batch"
THROUGHPUT_UNARY = "throughput-unary"
WATCH_FANOUT = "watch-fanout"
READ_LATENCY = "read-latency"
MEMORY = "memory"
BASELINE = "baseline"
"""Not a scenario of its own on the command line: ``--baseline`` adds it, first."""

SCENARIOS = (SUBMIT_LATENCY, THROUGHPUT_BATCH, THROUGHPUT_UNARY, WATCH_FANOUT, READ_LATENCY, MEMORY)
"""Every scenario, in the order a run takes them."""
DEFAULT_SCENARIOS = (SUBMIT_LATENCY, THROUGHPUT_BATCH, THROUGHPUT_UNARY, WATCH_FANOUT, READ_LATENCY)
"""What runs without ``--scenario``: everything but memory, which needs ``--pid``."""

DEFAULT_TASKS = {
    SUBMIT_LATENCY: 2_000,
    THROUGHPUT_BATCH: 10_000,
    THROUGHPUT_UNARY: 10_000,
    MEMORY: 20_000,
    BASELINE: 10_000,
}
"""Tasks (messages, for the baseline) per scenario unless ``--tasks`` says otherwise."""

MAX_SUBMIT_PAUSE_MS = 10_000
"""The longest ``--submit-pause``: 2,000 calls 10 s apart already take five and a half hours."""

# The goals of issue 5, shown next to each measured figure.
TARGET_SUBMIT_P50 = Target("<=", 1.0)
TARGET_SUBMIT_P99 = Target("<=", 3.0)
TARGET_BATCH_E2E = Target(">=", 3_000.0)
TARGET_UNARY_E2E = Target(">=", 1_500.0)
TARGET_UNARY_SUBMIT_P99 = Target("<=", 25.0)
TARGET_WATCH_P99 = Target("<=", 50.0)
TARGET_WATCH_MISSED = Target("<=", 0.0)
TARGET_READ_P99 = Target("<=", 10.0)
TARGET_WORKER_IDLE_MB = Target("<=", 100.0)
TARGET_GROWTH_PERCENT = Target("<=", 10.0)


@dataclass(frozen=True)
class BenchOptions:
    """How ``conveyor bench`` runs; every count is configurable so tests can use tiny ones.

    >>> BenchOptions(addr="127.0.0.1:50051", tasks=100).task_count("throughput-batch")
    100
    """

    addr: str
    scenarios: tuple[str, ...] = DEFAULT_SCENARIOS
    tasks: int | None = None
    """Overrides every scenario's task count (see DEFAULT_TASKS)."""
    batch_size: int = 500
    """Tasks per SubmitTasks call."""
    concurrency: int = 64
    """Unary calls in flight in throughput-unary."""
    watchers: int = 1_000
    reads: int = 1_000
    """GetTask calls of read-latency; each ListTasks query gets a fifth as many."""
    seed: int = 0
    """Tasks read-latency submits (and waits for) before reading."""
    submit_pause_ms: float = 0.0
    """submit-latency: idle time after each call before the next (0: back to back)."""
    pids: tuple[int, ...] = ()
    """The processes of the system under test: their CPU per task in submit-latency and the
    throughput scenarios, their memory in the memory scenario."""
    peers_dir: str = ""
    """A peers harness (run_all.sh, grpc_floor.py) to run first, for the side-by-side table."""
    http_url: str = ""
    """submit-latency: also submit over the gateway's HTTP door at this URL, interleaved;
    watch-fanout: watch over its Server-Sent Events instead of WatchTask."""
    baseline: bool = False
    nats_url: str = DEFAULT_NATS_URL
    timeout: float = 600.0
    """Longest wait for a scenario's tasks to finish, in seconds."""
    warmup: int = 500
    """noop tasks run to completion before measuring, so the worker is warm."""
    progress: bool = True

    def task_count(self, scenario: str) -> int:
        """Tasks the scenario submits."""
        return self.tasks if self.tasks is not None else DEFAULT_TASKS[scenario]

    def problems(self) -> list[str]:
        """What is wrong with these options, if anything."""
        found = [f"unknown scenario {s!r}" for s in self.scenarios if s not in SCENARIOS]
        if MEMORY in self.scenarios and not self.pids:
            found.append("the memory scenario needs --pid (the processes to sample)")
        positive = {
            "--tasks": self.tasks if self.tasks is not None else 1,
            "--batch-size": self.batch_size,
            "--concurrency": self.concurrency,
            "--watchers": self.watchers,
            "--reads": self.reads,
        }
        found += [f"{flag} must be at least 1" for flag, v in positive.items() if v < 1]
        found += [f"--pid {pid} is not a process id" for pid in self.pids if pid < 1]
        if self.batch_size > 1000:
            found.append("--batch-size must be at most 1000 (the gateway's default limit)")
        if self.seed < 0 or self.warmup < 0:
            found.append("--seed and --warmup must not be negative")
        if not 0 <= self.submit_pause_ms <= MAX_SUBMIT_PAUSE_MS:
            found.append(f"--submit-pause must be from 0 to {MAX_SUBMIT_PAUSE_MS:,} ms")
        if not self.scenarios and not self.baseline:
            found.append("nothing to run")
        return found

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        data = asdict(self)
        data["scenarios"] = list(self.scenarios)
        data["pids"] = list(self.pids)
        return data
