"""``conveyor stats`` (failure-rate analysis over a window) and ``conveyor top`` (a live
view of throughput, queues, running tasks and failures)."""

from __future__ import annotations

import argparse
import asyncio
import re
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from conveyor.api.queues.v1 import queues_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.cli.errors import UsageError
from conveyor.cli.render import Output
from conveyor.client import AsyncClient
from conveyor.tasks import STATE_NAMES, seconds

COMMANDS = ("stats", "top")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def window_seconds(text: str) -> float:
    """Seconds of a window such as 90s, 15m, 1h, 2d or a plain number of seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a window: {text!r} (try 90s, 15m, 1h, 2d)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def add_arguments(sub: Any, common: argparse.ArgumentParser) -> None:
    """Declares ``stats`` and ``top``."""
    stats = sub.add_parser(
        "stats", parents=[common], help="failure rates, run times and top errors per type"
    )
    stats.add_argument("--window", type=window_seconds, default=3600.0, help="e.g. 15m, 1h, 2d")
    stats.add_argument("--type", default="", help="only this task type")
    stats.add_argument("--errors", type=int, default=5, help="top errors per type (default 5)")
    top = sub.add_parser("top", parents=[common], help="live view of queues and throughput")
    top.add_argument("--interval", type=float, default=1.0, help="refresh every N seconds")
    top.add_argument("--iterations", type=int, default=0, help="stop after N refreshes")


def _ms(d: Any) -> str:
    value = seconds(d)
    return f"{value * 1000:.0f}ms" if value < 10 else f"{value:.1f}s"


def stats_table(response: tasks_pb2.GetTaskStatsResponse) -> Table:
    table = Table(title="tasks by type", title_justify="left")
    for column in (
        "type",
        "total",
        "states",
        "success",
        "retried",
        "run p50/p95/p99",
        "wait p50/p99",
    ):
        table.add_column(column, no_wrap=column == "type")
    for t in response.types:
        states = ", ".join(f"{STATE_NAMES.get(s.state, '?')} {s.count}" for s in t.states)
        run = f"{_ms(t.run_time.p50)} / {_ms(t.run_time.p95)} / {_ms(t.run_time.p99)}"
        wait = f"{_ms(t.queue_wait.p50)} / {_ms(t.queue_wait.p99)}"
        table.add_row(
            escape(t.type),
            str(t.total),
            states,
            f"{t.success_rate:.1%}",
            f"{t.retry_rate:.1%}",
            run if t.run_time.count else "-",
            wait if t.queue_wait.count else "-",
        )
    return table


def errors_table(response: tasks_pb2.GetTaskStatsResponse) -> Table | None:
    rows = [(t.type, e) for t in response.types for e in t.top_errors]
    if not rows:
        return None
    table = Table(title="most frequent errors", title_justify="left")
    for column in ("type", "count", "error", "message"):
        table.add_column(column, overflow="fold")
    for task_type, error in rows:
        table.add_row(
            escape(task_type), str(error.count), escape(error.type), escape(error.message)
        )
    return table


async def stats(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """``conveyor stats``."""
    if not 0 <= args.errors <= 50:
        raise UsageError("--errors must be from 0 to 50")
    response = await client.stats(window=args.window, type=args.type, top_errors=args.errors)
    if out.as_json:
        out.json(response)
        return 0
    if not response.types:
        out.note("no tasks in the window")
        return 0
    out.console.print(stats_table(response))
    errors = errors_table(response)
    if errors is not None:
        out.console.print(errors)
    return 0


def top_view(
    queues: list[queues_pb2.Queue], minute: tasks_pb2.GetTaskStatsResponse, interval: float
) -> Group:
    by_type = {t.type: t for t in minute.types}
    table = Table(
        title=f"conveyor top (refresh {interval:g}s; rates over the last minute)",
        title_justify="left",
    )
    for column in (
        "type",
        "queued h/n/l",
        "in flight",
        "done/min",
        "failed/min",
        "success",
        "run p95",
        "state",
    ):
        table.add_column(column, no_wrap=True)
    for queue in queues:
        t = by_type.get(queue.type, tasks_pb2.TypeStats())
        counts = {s.state: s.count for s in t.states}
        done = counts.get(tasks_pb2.TASK_STATE_COMPLETED, 0)
        failed = counts.get(tasks_pb2.TASK_STATE_FAILED, 0)
        waiting = "/".join(str(w) for w in queue.waiting) or "0/0/0"
        table.add_row(
            escape(queue.type),
            waiting,
            str(queue.in_flight),
            str(done),
            str(failed),
            f"{t.success_rate:.0%}" if done + failed else "-",
            _ms(t.run_time.p95) if t.run_time.count else "-",
            "[yellow]paused[/]" if queue.paused else "running",
        )
    return Group(table)


async def top(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """``conveyor top``: refreshes until Ctrl-C (or --iterations)."""
    if args.interval <= 0:
        raise UsageError("--interval must be positive")
    count = 0

    async def snapshot() -> Group:
        queues, minute = await asyncio.gather(client.list_queues(), client.stats(window=60))
        return top_view(queues, minute, args.interval)

    with Live(await snapshot(), console=out.console, auto_refresh=False) as live:
        while True:
            count += 1
            if args.iterations and count >= args.iterations:
                return 0
            await asyncio.sleep(args.interval)
            live.update(await snapshot(), refresh=True)


async def run_command(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """Runs ``stats`` or ``top``."""
    return await (stats if args.command == "stats" else top)(client, out, args)
