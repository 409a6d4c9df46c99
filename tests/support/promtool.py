"""promtool, Prometheus' own checker (Debian package ``prometheus``), for the tests.

Missing locally, the tests that need it skip; under CI (``CI=true``) they fail instead,
since .ci/run installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def promtool() -> str:
    """The path of promtool, or the test is skipped (failed under CI)."""
    path = shutil.which("promtool")
    if path is None:
        message = "promtool is not on PATH (apt-get install prometheus)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def run(*args: str, stdin: bytes = b"", cwd: Path | None = None) -> str:
    """Runs ``promtool args...``, asserting success; returns what it printed."""
    result = subprocess.run(
        [promtool(), *args], input=stdin, capture_output=True, cwd=cwd, timeout=60, check=False
    )
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def check_metrics(exposition: bytes) -> None:
    """Asserts that promtool accepts a /metrics exposition, lint included."""
    run("check", "metrics", stdin=exposition)
