"""Read latency of a running store (or gateway): GetTask and ListTasks, one call at a time.

    python -m benchmarks.bench_read --addr 127.0.0.1:50052            # the store directly
    python -m benchmarks.bench_read --addr 127.0.0.1:50052 --addr 127.0.0.1:50051 \\
        --url sqlite+aiosqlite:////tmp/seed/conveyor.db               # and the gateway

Times the reads ``conveyor bench --scenario read-latency`` times (GetTask; ListTasks first
page, next page, state=completed, by label; 50 per page) plus a few harder ones (a rare
state, a type, a label whose tasks are far from the newest, the 20th page), against each
``--addr`` in turn. GetTask ids are drawn at random from the whole database when ``--url``
is given (the bench draws from the 5,000 newest, which it also does without ``--url``).
Use it on a database filled by ``python -m benchmarks.seed_tasks``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.client import AsyncClient
from conveyor.ids import new_task_id
from store.db import create_engine

PAGE = 50
Call = Callable[[], Awaitable[Any]]


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))]


async def time_calls(call: Call, count: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        await call()
    seconds: list[float] = []
    for _ in range(count):
        begin = time.perf_counter()
        await call()
        seconds.append(time.perf_counter() - begin)
    seconds.sort()
    return {
        "calls": count,
        "p50_ms": percentile(seconds, 0.50) * 1000,
        "p90_ms": percentile(seconds, 0.90) * 1000,
        "p99_ms": percentile(seconds, 0.99) * 1000,
        "max_ms": seconds[-1] * 1000,
    }


async def sample_ids(client: AsyncClient, url: str | None, count: int) -> list[str]:
    """Random ids of the whole database with ``url``, else the newest (as the bench)."""
    if url:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                low, high = (await conn.execute(text("SELECT min(id), max(id) FROM tasks"))).one()
                # Ids start with their creation millisecond: seek to random points between.
                rng = random.Random(7)
                first_ms, last_ms = _millis(low), _millis(high)
                query = text("SELECT id FROM tasks WHERE id >= :i ORDER BY id LIMIT 1")
                ids: list[str] = []
                for _ in range(count):
                    start = new_task_id(rng.randint(first_ms, last_ms))
                    seek = (await conn.execute(query, {"i": start})).scalar()
                    ids.append(seek or high)
                return ids
        finally:
            await engine.dispose()
    found: list[str] = []
    async for task in client.iter_tasks(page_size=1000):
        found.append(task.id)
        if len(found) >= count:
            break
    return found


def _millis(task_id: str) -> int:
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    value = 0
    for char in task_id[:10]:
        value = value * 32 + alphabet.index(char)
    return value


async def queries(client: AsyncClient, label: dict[str, str], deep: int) -> dict[str, Call]:
    first = await client.list(page_size=PAGE)
    token = first.next_page_token
    for _ in range(deep - 2):
        token = (await client.list(page_size=PAGE, page_token=token)).next_page_token
    newest = first.tasks[0]
    completed = tasks_pb2.TASK_STATE_COMPLETED
    pending = tasks_pb2.TASK_STATE_PENDING
    return {
        "ListTasks first page": lambda: client.list(page_size=PAGE),
        "ListTasks next page": lambda: client.list(
            page_size=PAGE, page_token=first.next_page_token
        ),
        "ListTasks state=completed": lambda: client.list(states=[completed], page_size=PAGE),
        "ListTasks by label (newest's)": lambda: client.list(
            labels={"bench_run": newest.labels.get("bench_run", "")}, page_size=PAGE
        ),
        "ListTasks by label (old)": lambda: client.list(labels=label, page_size=PAGE),
        "ListTasks state=pending": lambda: client.list(states=[pending], page_size=PAGE),
        "ListTasks type=text_processing": lambda: client.list(
            type="text_processing", page_size=PAGE
        ),
        f"ListTasks page {deep}": lambda: client.list(page_size=PAGE, page_token=token),
    }


async def measure(addr: str, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    label_key, _, label_value = args.label.partition("=")
    async with AsyncClient(addr) as client:
        ids = await sample_ids(client, args.url, args.sample)
        pick = random.Random(len(ids)).choice
        timed: dict[str, dict[str, float]] = {}
        timed["GetTask"] = await time_calls(lambda: client.get(pick(ids)), args.reads, args.warmup)
        for name, call in (await queries(client, {label_key: label_value}, 20)).items():
            timed[name] = await time_calls(call, args.lists, args.warmup)
    if not args.json:
        print(f"{addr}  ({len(ids)} ids sampled)")
        print(f"  {'read':<34}{'calls':>6}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}  ms")
        for name, row in timed.items():
            print(
                f"  {name:<34}{row['calls']:>6}{row['p50_ms']:>8.2f}"
                f"{row['p90_ms']:>8.2f}{row['p99_ms']:>8.2f}{row['max_ms']:>8.2f}"
            )
    return timed


async def run(args: argparse.Namespace) -> dict[str, dict[str, dict[str, float]]]:
    return {addr: await measure(addr, args) for addr in args.addr}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", action="append", required=True, help="store or gateway")
    parser.add_argument("--url", help="the database, to draw GetTask ids from all of it")
    parser.add_argument("--reads", type=int, default=1000, help="GetTask calls timed")
    parser.add_argument("--lists", type=int, default=200, help="calls timed per ListTasks")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls first, each")
    parser.add_argument("--sample", type=int, default=5000, help="ids to draw GetTasks from")
    parser.add_argument("--label", default="bench_run=seed-050", help="the old label K=V")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    if args.json:
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
