"""benchmarks.grpc_floors: the durable-submit floors, run small against real servers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks.grpc_floors import Mode, Row, median_row, parse_peer_floor


def test_the_peer_floor_figures_are_read_from_what_grpc_floor_prints() -> None:
    printed = "sequential: p50 0.512 ms  p99 0.987 ms  rate 1845/s\n64 in flight: 5836 calls/s\n"
    assert parse_peer_floor(printed) == {
        "p50_ms": 0.512,
        "p99_ms": 0.987,
        "rate": 1845.0,
        "inflight_rate": 5836.0,
    }


def test_rounds_are_summed_up_figure_by_figure_by_their_median() -> None:
    def row(p50: float, rate: float, server: float | None) -> Row:
        mode = Mode(3000, rate, p50, p50 * 2, server, 0.1, 0.2)
        return Row("aio", "acked1", mode, mode)

    got = median_row([row(0.9, 1000, 0.5), row(0.7, 1400, 0.3), row(0.8, 1100, 0.4)])
    assert (got.stack, got.work) == ("aio", "acked1")
    assert got.sequential == Mode(3000, 1100, 0.8, 1.6, 0.4, 0.1, 0.2)
    # A row with no server (the publish awaited by the bench itself) keeps saying so.
    assert median_row([row(0.1, 9000, None)] * 2).inflight.server_cpu_ms is None


def test_a_peer_floor_that_printed_no_figures_is_an_error_naming_its_output() -> None:
    with pytest.raises(ValueError, match="Traceback"):
        parse_peer_floor("Traceback (most recent call last): OSError: address in use\n")


def test_each_stack_serves_calls_that_await_durable_publishes() -> None:
    rows = ["aio:empty", "aio:acked2", "sync:acked1", "grpclib:js1", "direct:acked1"]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.grpc_floors", "--json", "--no-peer-floor"]
        + ["--calls", "20", "--warmup", "5", "--inflight-calls", "40", "--concurrency", "8"]
        + ["--repeat", "2"]
        + [arg for row in rows for arg in ("--row", row)],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    report = json.loads(done.stdout)
    assert [f"{r['stack']}:{r['work']}" for r in report["rows"]] == rows
    for row in report["rows"]:
        assert row["sequential"]["calls"] == 20
        assert row["inflight"]["calls"] == 40
        assert 0 < row["sequential"]["p50_ms"] <= row["sequential"]["p99_ms"]
    # Every call of a publishing row was answered after its publishes were stored: 65 calls
    # a round (warm-up, one at a time, in flight), two rounds; four rows publish a task,
    # one an event too.
    assert report["stored"] == {"FLOOR_TASKS": 4 * 130, "FLOOR_EVENTS": 130}
    # The bench measures its own process, not a server's, when there is none.
    assert report["rows"][-1]["sequential"]["server_cpu_ms"] is None
    assert report["rows"][0]["sequential"]["server_cpu_ms"] is not None


def test_an_unknown_row_is_refused_before_anything_starts() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.grpc_floors", "--row", "tornado:empty"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown row 'tornado:empty'" in done.stderr
