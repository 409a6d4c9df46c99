"""Every service's ``python -m`` entry point refuses bad settings clearly, before starting."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("service", ["gateway", "store", "scheduler", "worker"])
def test_bad_settings_exit_2_naming_every_bad_variable(service: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(CONVEYOR_LOG_LEVEL="loud", CONVEYOR_STREAM_REPLICAS="seven")
    done = subprocess.run(
        [sys.executable, "-m", service], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "CONVEYOR_LOG_LEVEL='loud'" in done.stderr
    assert "CONVEYOR_STREAM_REPLICAS='seven'" in done.stderr
    assert "Traceback" not in done.stderr
