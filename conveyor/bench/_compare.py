"""Conveyor beside its peers: the systems table and the ratios of issue 20, all from figures
measured in one run on one machine (the peers harness, the bare gRPC floor, the scenarios).
"""

from __future__ import annotations

from conveyor.bench._options import (
    SUBMIT_LATENCY,
    THROUGHPUT_BATCH,
    THROUGHPUT_UNARY,
    WATCH_FANOUT,
)
from conveyor.bench._peers import CELERY_STATEFUL, TASKIQ_BATCH, TASKIQ_STATEFUL
from conveyor.bench._proc import LISTED
from conveyor.bench._results import (
    Comparison,
    PeerRow,
    PeerRun,
    Report,
    SideBySide,
    System,
    Target,
)

WATCH_WATCHERS = 10_000
"""The watchers issue 20's watch target is set for."""
WATCH_P99_MS = 100.0


def _figure(report: Report, scenario: str, metric: str) -> float | None:
    found = report.scenario(scenario)
    value = found.metric(metric) if found else None
    return None if value is None else value.value


def _cpu(report: Report, scenario: str) -> float | None:
    return _figure(report, scenario, f"CPU/task {LISTED}")


def side_by_side(report: Report, peers: PeerRun) -> SideBySide:
    """The systems table and issue 20's targets from ``report`` and the harness's figures."""
    result = SideBySide(peers)
    floor = peers.floor
    for row in peers.rows:
        result.systems.append(System(row.name, row.e2e, row.submit_p50, row.submit_p99))
    if floor is not None:
        result.systems.append(
            System("bare grpc.aio call, one at a time", floor.rate, floor.p50, floor.p99)
        )
        result.systems.append(
            System(f"bare grpc.aio call, {floor.in_flight} in flight", floor.in_flight_rate)
        )
    one_e2e = _figure(report, SUBMIT_LATENCY, "e2e throughput")
    p50 = _figure(report, SUBMIT_LATENCY, "submit p50")
    p99 = _figure(report, SUBMIT_LATENCY, "submit p99")
    unary = report.scenario(THROUGHPUT_UNARY)
    in_flight = unary.details.get("in_flight", "?") if unary else "?"
    unary_e2e = _figure(report, THROUGHPUT_UNARY, "e2e throughput")
    unary_p50 = _figure(report, THROUGHPUT_UNARY, "submit under load p50")
    unary_p99 = _figure(report, THROUGHPUT_UNARY, "submit under load p99")
    batch = report.scenario(THROUGHPUT_BATCH)
    size = batch.details.get("batch_size", "?") if batch else "?"
    batch_e2e = _figure(report, THROUGHPUT_BATCH, "e2e throughput")
    if report.scenario(SUBMIT_LATENCY):
        result.systems.append(
            System(
                "Conveyor, unary SubmitTask one at a time",
                one_e2e,
                p50,
                p99,
                _cpu(report, SUBMIT_LATENCY),
            )
        )
    if unary:
        result.systems.append(
            System(
                f"Conveyor, unary, {in_flight} in flight",
                unary_e2e,
                unary_p50,
                unary_p99,
                _cpu(report, THROUGHPUT_UNARY),
            )
        )
    if batch:
        result.systems.append(
            System(
                f"Conveyor, SubmitTasks of {size}",
                batch_e2e,
                cpu_ms_per_task=_cpu(report, THROUGHPUT_BATCH),
            )
        )

    celery = peers.best_e2e(CELERY_STATEFUL)
    taskiq = peers.best_e2e(TASKIQ_STATEFUL)
    taskiq_batch = peers.best_e2e(TASKIQ_BATCH)
    grpc_one = "bare gRPC call"
    grpc_many = f"bare gRPC call, {floor.in_flight if floor else 64} in flight"
    result.comparisons = [
        Comparison(
            "unary submit p50, one at a time",
            p50,
            "ms",
            Target("<=", 1.5),
            f"{grpc_one} p50",
            floor.p50 if floor else None,
        ),
        Comparison(
            "unary submit p99, one at a time",
            p99,
            "ms",
            Target("<=", 1.5),
            f"{grpc_one} p99",
            floor.p99 if floor else None,
        ),
        Comparison(
            "e2e, unary one at a time",
            one_e2e,
            "tasks/s",
            Target(">=", 1.5),
            _name(celery, CELERY_STATEFUL),
            celery.e2e if celery else None,
        ),
        Comparison(
            "e2e, unary one at a time",
            one_e2e,
            "tasks/s",
            Target(">=", 0.6),
            f"{grpc_one} rate",
            floor.rate if floor else None,
        ),
        Comparison(
            f"e2e, unary {in_flight} in flight",
            unary_e2e,
            "tasks/s",
            Target(">=", 0.5),
            f"{grpc_many} rate",
            floor.in_flight_rate if floor else None,
        ),
        Comparison(
            f"submit p99, unary {in_flight} in flight",
            unary_p99,
            "ms",
            Target("<=", 2.0),
            "its own p50",
            unary_p50,
        ),
        Comparison(
            f"e2e, SubmitTasks of {size}",
            batch_e2e,
            "tasks/s",
            Target(">=", 2.0),
            _name(taskiq, TASKIQ_STATEFUL),
            taskiq.e2e if taskiq else None,
        ),
        Comparison(
            f"e2e, SubmitTasks of {size}",
            batch_e2e,
            "tasks/s",
            Target(">=", 1.5),
            _name(taskiq_batch, TASKIQ_BATCH),
            taskiq_batch.e2e if taskiq_batch else None,
        ),
    ]
    watch = report.scenario(WATCH_FANOUT)
    if watch is not None:
        watchers = int(watch.details.get("watchers", 0))
        result.comparisons += [
            Comparison(
                f"watch, {watchers:,} watchers: event→watcher p99",
                _figure(report, WATCH_FANOUT, "event→watcher p99"),
                "ms",
                Target("<=", WATCH_P99_MS),
            ),
            Comparison(
                f"watch, {watchers:,} watchers: updates missed",
                _figure(report, WATCH_FANOUT, "updates missed"),
                "",
                Target("<=", 0.0),
            ),
        ]
    return result


def _name(row: PeerRow | None, peer: str) -> str:
    return f"{row.name} e2e" if row is not None else f"{peer} e2e (not measured)"
