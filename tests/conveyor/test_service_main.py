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


def test_a_started_service_freezes_its_start_up_objects_and_collects_less_often() -> None:
    # In a child process: freezing this test process would keep every later test's garbage.
    probe = (
        "import gc\n"
        "from conveyor.server import GC_YOUNG_THRESHOLD, settle_garbage_collector\n"
        "settle_garbage_collector()\n"
        "assert gc.get_freeze_count() > 10_000, gc.get_freeze_count()\n"
        "assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD > 700\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_by_default_every_service_listens_on_loopback_only() -> None:
    from conveyor.config import GatewaySettings, SchedulerSettings, StoreSettings, WorkerSettings

    for settings in (GatewaySettings, StoreSettings, SchedulerSettings, WorkerSettings):
        defaults = settings.from_env({})
        assert defaults.listen.startswith("127.0.0.1:"), settings.__name__
        assert defaults.metrics_listen.startswith("127.0.0.1:"), settings.__name__


def test_a_service_that_crashes_in_native_code_prints_where_before_dying() -> None:
    # A segmentation fault in the service's start, as a crash in gRPC's or uvloop's C
    # would be: the log must name the Python frames, not only the signal.
    probe = (
        "import ctypes\n"
        "from conveyor.config import GatewaySettings\n"
        "from conveyor.server import run_service\n"
        "class Crashing:\n"
        "    async def start(self):\n"
        "        ctypes.string_at(0)\n"
        "    async def stop(self):\n"
        "        pass\n"
        "run_service('probe', {}, GatewaySettings.from_env, lambda s: Crashing(), lambda s: [])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEYOR_", "PYTHONFAULT"))}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == -11
    assert "Fatal Python error: Segmentation fault" in done.stderr
    assert "in start" in done.stderr
