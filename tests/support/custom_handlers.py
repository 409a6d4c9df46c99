"""Handlers of user-defined task types used by the integration tests.

Module-level, so that CPU-bound ones can be run in the worker's spawned processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from typing import Any

from conveyor.context import TaskContext
from conveyor.errors import NonRetryable, Retry
from conveyor.registry import Registry, RetryPolicy

FAST_RETRY = RetryPolicy(initial_delay=0.1, max_delay=0.2)


class Calls:
    """What the handlers saw, for the tests to check."""

    flaky: int = 0
    fail_once_seen: set[str] = set()  # noqa: RUF012
    sleeper_started: asyncio.Event | None = None
    sleeper_cancelled = False
    never: int = 0
    stubborn_runs: int = 0
    stubborn_started: asyncio.Event | None = None
    started: list[str] = []  # noqa: RUF012 - labels of `record` tasks, in start order


class Gauge:
    """Tasks of type `gauge` running right now in this process, and the most seen."""

    running = 0
    peak = 0
    starts: list[float] = []  # noqa: RUF012


async def gauge(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    Gauge.running += 1
    Gauge.peak = max(Gauge.peak, Gauge.running)
    Gauge.starts.append(time.monotonic())
    try:
        await asyncio.sleep(float(payload.get("seconds", 0.3)))
    finally:
        Gauge.running -= 1
    return {"worker": ctx.worker_id}


async def record(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    Calls.started.append(str(payload.get("tag", "")))
    await asyncio.sleep(0.002)
    return {}


async def greet(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    return {"greeting": f"hello {payload['name']}", "attempt": ctx.attempt}


async def echo(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    return payload


def _nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"d": value}
    return value


def _looped() -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["self"] = value
    return value


UNSTORABLE: dict[str, Any] = {
    "nan": lambda: {"x": float("nan")},
    "infinity": lambda: {"x": [1, {"y": float("-inf")}]},
    "deep": lambda: _nested(200),
    "just_too_deep": lambda: _nested(34),
    "loop": _looped,
    "big_int": lambda: {"id": 2**70},
    "huge_int": lambda: {"id": 10**400},
    "int_key": lambda: {"x": {1: "one"}},
    "bytes": lambda: {"x": b"raw"},
    "surrogate": lambda: {"x": "\ud800"},
}
"""Results a handler may return that JSON, or a protobuf parser, cannot take back."""


async def unstorable(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = UNSTORABLE[payload["kind"]]()
    return result


async def odd_text(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Reports progress and fails with text UTF-8 cannot encode (a lone surrogate)."""
    await ctx.progress(1, 2, "half \ud800 way")
    raise NonRetryable("bad \udcff data")


class Unreadable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message")


async def odd_retry(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Asks for a retry with a delay that is no number of seconds, then fails unreadably."""
    if ctx.attempt == 1:
        raise Retry(delay=payload.get("delay", math.nan), reason="later")
    raise Unreadable()


async def flaky(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    Calls.flaky += 1
    if ctx.attempt < 3:
        raise ConnectionError(f"upstream down on attempt {ctx.attempt}")
    return {"ok": True}


async def fail_once(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    if ctx.task_id not in Calls.fail_once_seen:
        Calls.fail_once_seen.add(ctx.task_id)
        raise NonRetryable("bad data the first time")
    return {"ok": True}


async def sleeper(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    if Calls.sleeper_started is not None:
        Calls.sleeper_started.set()
    try:
        await asyncio.sleep(float(payload.get("seconds", 60)))
    except asyncio.CancelledError:
        Calls.sleeper_cancelled = True
        raise
    return {}


async def never(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    Calls.never += 1
    return {}


def spin(payload: dict[str, Any]) -> dict[str, Any]:
    """CPU-bound: busy-loops for payload['seconds'] and returns its pid."""
    deadline = time.monotonic() + float(payload.get("seconds", 0))
    while time.monotonic() < deadline:
        pass
    return {"pid": os.getpid()}


async def stubborn(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Its first run finishes its work even when cancelled meanwhile; later runs at once."""
    Calls.stubborn_runs += 1
    if Calls.stubborn_runs == 1:
        assert Calls.stubborn_started is not None
        Calls.stubborn_started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(60)
    return {"run": Calls.stubborn_runs}


def crash(payload: dict[str, Any]) -> dict[str, Any]:
    """CPU-bound: kills its own process, every time."""
    os._exit(17)


def _check_quantity(row: dict[str, Any]) -> None:
    """The bottom of a call chain the traceback tests look for (by name and line); ``odd``
    puts text UTF-8 cannot encode in the message, ``pad`` that many characters."""
    odd, pad = "\udcff" if row.get("odd") else "", "!" * int(row.get("pad", 0))
    raise ValueError(f"quantity {odd}{row['quantity']} is below zero{pad}")


def _parse_row(row: dict[str, Any]) -> None:
    _check_quantity(row)


def invalid(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Raises ValueError two calls down, its message padded with ``pad`` characters."""
    _parse_row(payload)
    return {}


async def invalid_async(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    return invalid(ctx, payload)


def invalid_cpu(payload: dict[str, Any]) -> dict[str, Any]:
    """CPU-bound: raises ValueError two calls down, in its child process."""
    _parse_row(payload)
    return {}


def registry() -> Registry:
    """A registry with the test types (the worker adds the built-ins)."""
    r = Registry()
    r.task("greet")(greet)
    r.task("echo")(echo)
    r.task("unstorable", max_attempts=3, retry=FAST_RETRY)(unstorable)
    r.task("odd_text", max_attempts=3, retry=FAST_RETRY)(odd_text)
    r.task("odd_retry", max_attempts=2, retry=FAST_RETRY)(odd_retry)
    r.task("flaky", max_attempts=3, retry=FAST_RETRY)(flaky)
    r.task("fail_once", max_attempts=3, retry=FAST_RETRY)(fail_once)
    r.task("sleeper", timeout=120)(sleeper)
    r.task("never")(never)
    r.task("stubborn")(stubborn)
    r.task("record")(record)
    r.task("gauge")(gauge)
    r.task("spin", cpu_bound=True, timeout=30, retry=FAST_RETRY)(spin)
    r.task("crash", cpu_bound=True, max_attempts=2, retry=FAST_RETRY)(crash)
    r.task("invalid", max_attempts=2, retry=FAST_RETRY)(invalid_async)
    r.task("invalid_cpu", cpu_bound=True, max_attempts=1)(invalid_cpu)
    return r
