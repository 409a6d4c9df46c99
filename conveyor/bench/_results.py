"""What a benchmark run produces: latency summaries, metrics with their targets, counts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from conveyor.bench._compare import SideBySide

_SECOND_MS = 1000.0


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of already sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class Latency:
    """A summary of durations, in milliseconds."""

    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float

    @staticmethod
    def of(seconds: Sequence[float]) -> Latency:
        """The summary of durations given in seconds; raises ValueError when empty."""
        values = sorted(s * _SECOND_MS for s in seconds)
        return Latency(
            count=len(values),
            mean=sum(values) / len(values) if values else 0.0,
            p50=percentile(values, 50),
            p90=percentile(values, 90),
            p99=percentile(values, 99),
            max=values[-1],
        )

    def to_dict(self) -> dict[str, float | int]:
        """Plain data for JSON."""
        return {
            "count": self.count,
            "mean": round(self.mean, 3),
            "p50": round(self.p50, 3),
            "p90": round(self.p90, 3),
            "p99": round(self.p99, 3),
            "max": round(self.max, 3),
        }


@dataclass(frozen=True)
class Target:
    """A goal of issue 5, such as "<= 3 ms" or ">= 3000 tasks/s"."""

    op: Literal["<=", ">="]
    value: float

    def met(self, value: float) -> bool:
        """True when ``value`` reaches the goal."""
        return value <= self.value if self.op == "<=" else value >= self.value


@dataclass(frozen=True)
class Metric:
    """One measured figure, with its unit and, when issue 5 sets one, its target."""

    name: str
    value: float
    unit: str
    target: Target | None = None

    @property
    def met(self) -> bool | None:
        """Whether the target is reached; None without a target."""
        return None if self.target is None else self.target.met(self.value)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "name": self.name,
            "value": round(self.value, 3),
            "unit": self.unit,
            "target": None
            if self.target is None
            else {"op": self.target.op, "value": self.target.value},
            "met": self.met,
        }


def latency_metrics(
    label: str,
    latency: Latency,
    *,
    p50: Target | None = None,
    p99: Target | None = None,
    with_p90: bool = False,
) -> list[Metric]:
    """The p50, (p90,) p99 and max of a latency as metrics named "<label> p50" and so on."""
    metrics = [Metric(f"{label} p50", latency.p50, "ms", p50)]
    if with_p90:
        metrics.append(Metric(f"{label} p90", latency.p90, "ms"))
    metrics.append(Metric(f"{label} p99", latency.p99, "ms", p99))
    metrics.append(Metric(f"{label} max", latency.max, "ms"))
    return metrics


@dataclass
class ScenarioResult:
    """The outcome of one scenario.

    ``submitted`` and ``completed`` count tasks this scenario submitted and then found
    COMPLETED in the store; a run is sound only when they are equal.
    """

    name: str
    submitted: int = 0
    completed: int = 0
    elapsed: float = 0.0
    metrics: list[Metric] = field(default_factory=list)
    latencies: dict[str, Latency] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def counts_exact(self) -> bool:
        """True when every submitted task completed."""
        return self.submitted == self.completed

    def metric(self, name: str) -> Metric | None:
        """The metric called ``name``, if measured."""
        return next((m for m in self.metrics if m.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "name": self.name,
            "submitted": self.submitted,
            "completed": self.completed,
            "counts_exact": self.counts_exact,
            "elapsed_s": round(self.elapsed, 3),
            "metrics": [m.to_dict() for m in self.metrics],
            "latency_ms": {k: v.to_dict() for k, v in self.latencies.items()},
            "details": self.details,
            "notes": self.notes,
        }


@dataclass
class Report:
    """Everything one ``conveyor bench`` run measured."""

    run_id: str
    addr: str
    started_at: str
    machine: dict[str, Any]
    options: dict[str, Any]
    scenarios: list[ScenarioResult] = field(default_factory=list)
    side_by_side: SideBySide | None = None
    """With ``--peers``: the peers measured in the same run, and the ratios of issue 20."""

    @property
    def counts_exact(self) -> bool:
        """True when every scenario's submitted tasks all completed."""
        return all(s.counts_exact for s in self.scenarios)

    def scenario(self, name: str) -> ScenarioResult | None:
        """The result of the scenario called ``name``, if it ran."""
        return next((s for s in self.scenarios if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "run_id": self.run_id,
            "addr": self.addr,
            "started_at": self.started_at,
            "machine": self.machine,
            "options": self.options,
            "counts_exact": self.counts_exact,
            "scenarios": [s.to_dict() for s in self.scenarios],
            "side_by_side": None if self.side_by_side is None else self.side_by_side.to_dict(),
        }
