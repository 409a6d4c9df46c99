"""``conveyor bench``: measure a running Conveyor system with no-op tasks.

Run it against a system whose workers serve the ``noop`` type (see
:mod:`conveyor.bench.noop`)::

    CONVEYOR_WORKER_IMPORTS=conveyor.bench.noop conveyor dev
    conveyor bench --baseline

Or from Python::

    import asyncio
    from conveyor.bench import BenchOptions, run_bench

    report = asyncio.run(run_bench(BenchOptions(addr="127.0.0.1:50051", tasks=1000)))
    print(report.to_dict())

The names below are imported on first use: a worker importing ``conveyor.bench.noop``
must not pay for the benchmark's client and display in its memory.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.bench._options import DEFAULT_SCENARIOS, SCENARIOS, BenchOptions
    from conveyor.bench._results import Latency, Metric, Report, ScenarioResult, Target
    from conveyor.bench._runner import run_bench
    from conveyor.bench._tracking import BenchError

__all__ = [
    "DEFAULT_SCENARIOS",
    "SCENARIOS",
    "BenchError",
    "BenchOptions",
    "Latency",
    "Metric",
    "Report",
    "ScenarioResult",
    "Target",
    "run_bench",
]

_HOMES = {
    "DEFAULT_SCENARIOS": "_options",
    "SCENARIOS": "_options",
    "BenchOptions": "_options",
    "Latency": "_results",
    "Metric": "_results",
    "Report": "_results",
    "ScenarioResult": "_results",
    "Target": "_results",
    "run_bench": "_runner",
    "BenchError": "_tracking",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
