"""benchmarks.bench_submit_path: the gateway's own Python per SubmitTask, run small."""

from __future__ import annotations

import subprocess
import sys


def test_each_part_is_measured_through_the_real_handler_and_interceptors() -> None:
    # A submit the gateway refused, or an interceptor that failed, would end the run with
    # a traceback: the stand-in context cannot abort a call.
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_submit_path", "--calls", "50", "--rounds", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = [line.split("|")[1:3] for line in done.stdout.splitlines()[2:]]
    assert [name.strip() for name, _ in rows] == ["interceptors", "submit", "both"]
    for _, figure in rows:
        assert float(figure.strip().removesuffix(" µs")) > 0
