"""``conveyor bench``: its flags, and the command the CLI runs.

The CLI depends on :mod:`conveyor.bench`, never the reverse; only the bench's options are
imported to build the parser, and its runner (which needs the ``bench`` extra) when the
command runs.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from conveyor.bench._options import (
    DEFAULT_SCENARIOS,
    DEFAULT_TASKS,
    SCENARIOS,
    BenchOptions,
)
from conveyor.cli.errors import MissingExtra, UsageError
from conveyor.config import DEFAULT_NATS_URL, load_environ

if TYPE_CHECKING:
    from conveyor.cli.render import Output
    from conveyor.client import AsyncClient

DESCRIPTION = """\
Measure a running Conveyor system with no-op tasks, like `nats bench` or `pgbench`.
Its workers must serve the noop type: `python -m worker --import conveyor.bench.noop`,
or `CONVEYOR_WORKER_IMPORTS=conveyor.bench.noop conveyor dev`. Every task is labelled
bench_run=<run id> and bench_scenario=<scenario>."""

EPILOG = f"""\
scenarios (default: all but memory):
  submit-latency    unary SubmitTask, one at a time ({DEFAULT_TASKS["submit-latency"]:,} tasks)
  throughput-batch  SubmitTasks batches, first submit to all COMPLETED \
({DEFAULT_TASKS["throughput-batch"]:,})
  throughput-unary  unary SubmitTask, --concurrency in flight \
({DEFAULT_TASKS["throughput-unary"]:,})
  watch-fanout      --watchers WatchTask streams, event-to-watcher latency
  read-latency      GetTask and ListTasks, one at a time (--seed N submits N first)
  memory            RSS of --pid processes over ten rounds of tasks ({DEFAULT_TASKS["memory"]:,})

examples:
  conveyor bench --baseline --nats-url nats://127.0.0.1:4222
  conveyor bench --scenario throughput-batch --tasks 100000
  conveyor bench --scenario submit-latency --submit-pause 10
  conveyor bench --scenario memory --pid $(pgrep -f 'python -m worker') --tasks 100000
  conveyor bench --pid $(pgrep -f 'python -m (gateway|worker|store)') $(pgrep nats-server)
  conveyor bench --peers benchmarks/peers   # the peers harness, after its setup.sh: side by side

--pid adds, to submit-latency and the throughput scenarios, the CPU per completed task of
each process (user + system time from /proc/<pid>/stat, from the first submit until the
last task finished), with this process's and the whole machine's for comparison.
  conveyor --json bench > results.json
"""


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the flags of ``conveyor bench`` on its subparser."""
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--scenario",
        dest="scenarios",
        action="append",
        choices=SCENARIOS,
        metavar="NAME",
        help="run this scenario (repeatable; default: all but memory)",
    )
    parser.add_argument(
        "--tasks", type=_positive, metavar="N", help="tasks per scenario (overrides defaults)"
    )
    parser.add_argument(
        "--batch-size", type=_positive, default=500, metavar="N", help="tasks per SubmitTasks"
    )
    parser.add_argument(
        "--concurrency", type=_positive, default=64, metavar="N", help="unary calls in flight"
    )
    parser.add_argument(
        "--watchers", type=_positive, default=1000, metavar="N", help="WatchTask streams at once"
    )
    parser.add_argument(
        "--reads", type=_positive, default=1000, metavar="N", help="GetTask calls timed"
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="N", help="read-latency: submit N tasks first"
    )
    parser.add_argument(
        "--submit-pause",
        dest="submit_pause_ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="submit-latency: wait MS milliseconds after each call (default 0: back to back)",
    )
    parser.add_argument(
        "--pid",
        dest="pids",
        type=int,
        nargs="+",
        action="extend",
        metavar="PID",
        help="processes of the system under test: CPU per task in each throughput scenario, "
        "RSS in the memory scenario",
    )
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="also measure raw JetStream (publish + fetch + ack) and compare",
    )
    parser.add_argument(
        "--nats-url",
        metavar="URL",
        help="NATS for --baseline (default: $CONVEYOR_NATS_URL or nats://127.0.0.1:4222)",
    )
    parser.add_argument(
        "--warmup", type=int, default=500, metavar="N", help="noop tasks run before measuring"
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, metavar="SEC", help="longest wait per scenario"
    )
    parser.add_argument(
        "--http",
        nargs="?",
        const="http://127.0.0.1:8000",
        metavar="URL",
        help="submit-latency: also submit over the HTTP door (default URL http://127.0.0.1:8000), "
        "interleaved with gRPC, and compare; watch-fanout: watch over its Server-Sent Events",
    )
    parser.add_argument(
        "--peers",
        metavar="DIR",
        help="first run the peers harness in DIR (its run_all.sh and grpc_floor.py, set up "
        "by its setup.sh) and print its figures beside Conveyor's with issue 20's ratios",
    )
    parser.add_argument("--no-progress", action="store_true", help="no live progress display")


def options_from_args(args: argparse.Namespace, addr: str) -> BenchOptions:
    """The options a ``conveyor bench`` command line asks for."""
    pids = tuple(args.pids or ())
    scenarios = tuple(args.scenarios or DEFAULT_SCENARIOS)
    nats_url = args.nats_url or load_environ().get("CONVEYOR_NATS_URL") or DEFAULT_NATS_URL
    return BenchOptions(
        addr=addr,
        scenarios=tuple(s for s in SCENARIOS if s in scenarios),
        tasks=args.tasks,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        watchers=args.watchers,
        reads=args.reads,
        seed=args.seed,
        submit_pause_ms=args.submit_pause_ms,
        pids=pids,
        peers_dir=args.peers or "",
        http_url=args.http or "",
        baseline=args.baseline,
        nats_url=nats_url,
        timeout=args.timeout,
        warmup=args.warmup,
        progress=not args.no_progress,
    )


async def run_command(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """Runs ``conveyor bench``; exits 1 when a submitted task did not complete."""
    try:
        from conveyor.bench._display import print_report
        from conveyor.bench._runner import run_bench
    except ModuleNotFoundError as exc:
        raise MissingExtra("conveyor bench", "bench", exc.name) from exc

    options = options_from_args(args, client.target)
    problems = options.problems()
    if problems:
        raise UsageError("; ".join(problems))
    report = await run_bench(options, client)
    if out.as_json:
        out.json(report.to_dict())
    else:
        print_report(out.console, report)
    return 0 if report.counts_exact else 1
