"""What a benchmark run produces: latency summaries, metrics with their targets, counts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

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


@dataclass(frozen=True)
class PeerRow:
    """One row of the harness: a peer in one configuration."""

    peer: str
    """The harness's name for the benchmark (its PEERS entry), e.g. celery_redis_stateful."""
    name: str
    """The row's own label, e.g. "celery_redis_stateful (solo)"."""
    e2e: float | None
    enqueue: float | None
    submit_p50: float | None
    submit_p99: float | None
    foreign_cpu_pct: float | None
    machine_busy_pct: float | None

    @staticmethod
    def of(peer: str, data: dict[str, Any]) -> PeerRow:
        """The row from one JSON line of a peer script."""

        def number(key: str) -> float | None:
            value = data.get(key)
            return float(value) if isinstance(value, int | float) else None

        return PeerRow(
            peer=peer,
            name=str(data.get("peer", peer)),
            e2e=number("e2e_per_s"),
            enqueue=number("enqueue_per_s"),
            submit_p50=number("submit_p50_ms"),
            submit_p99=number("submit_p99_ms"),
            foreign_cpu_pct=number("foreign_cpu_pct"),
            machine_busy_pct=number("machine_busy_pct"),
        )


@dataclass(frozen=True)
class Floor:
    """A bare grpc.aio unary call (``grpc_floor.py``): back to back, and many in flight."""

    p50: float
    p99: float
    rate: float
    in_flight: int
    in_flight_rate: float


@dataclass
class PeerRun:
    """What the harness measured in this run."""

    directory: str
    rows: list[PeerRow] = field(default_factory=list)
    floor: Floor | None = None
    missing: list[str] = field(default_factory=list)
    """Peers asked for that reported no row (their log says why)."""
    log_dir: str = ""
    notes: list[str] = field(default_factory=list)

    def best_e2e(self, peer: str) -> PeerRow | None:
        """The fastest end-to-end row of ``peer`` (Celery has one per worker pool)."""
        rows = [r for r in self.rows if r.peer == peer and r.e2e is not None]
        return max(rows, key=lambda r: r.e2e or 0.0, default=None)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "directory": self.directory,
            "rows": [asdict(r) for r in self.rows],
            "floor": None if self.floor is None else asdict(self.floor),
            "missing": self.missing,
            "log_dir": self.log_dir,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Comparison:
    """One target of issue 20: Conveyor's figure against a reference measured in the run
    (``target`` bounds their ratio), or against a fixed value (``target`` bounds the figure).
    """

    goal: str
    measured: float | None
    unit: str
    target: Target
    reference: str = ""
    reference_value: float | None = None

    @property
    def relative(self) -> bool:
        """True when the target is on a ratio to a measured reference."""
        return bool(self.reference)

    @property
    def value(self) -> float | None:
        """The figure the target is judged on: the ratio, or the measured value itself."""
        if self.measured is None:
            return None
        if not self.relative:
            return self.measured
        if not self.reference_value:
            return None
        return self.measured / self.reference_value

    @property
    def met(self) -> bool | None:
        """Whether the target is reached; None when a figure is missing."""
        value = self.value
        return None if value is None else self.target.met(value)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        value = self.value
        return {
            "goal": self.goal,
            "measured": None if self.measured is None else round(self.measured, 3),
            "unit": self.unit,
            "reference": self.reference,
            "reference_value": self.reference_value,
            "value": None if value is None else round(value, 3),
            "target": {"op": self.target.op, "value": self.target.value},
            "met": self.met,
        }


@dataclass(frozen=True)
class System:
    """A row of the systems table, like the one issue 20 opens with."""

    name: str
    e2e: float | None
    submit_p50: float | None = None
    submit_p99: float | None = None
    cpu_ms_per_task: float | None = None
    """Conveyor only: CPU per task of every process given with --pid."""


@dataclass
class SideBySide:
    """The systems measured in the run and each target's comparison."""

    peers: PeerRun
    systems: list[System] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def met(self) -> int:
        """How many targets were reached."""
        return sum(c.met is True for c in self.comparisons)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "peers": self.peers.to_dict(),
            "systems": [vars(s) for s in self.systems],
            "comparisons": [c.to_dict() for c in self.comparisons],
            "met": self.met,
            "targets": len(self.comparisons),
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
