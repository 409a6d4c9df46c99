"""Reconciliation is tested on the services run as processes, as the fault tests run them."""

from __future__ import annotations

from tests.faults.conftest import cluster, nats_file_server, pytest_runtest_makereport

__all__ = ["cluster", "nats_file_server", "pytest_runtest_makereport"]
