"""The public names of the SDK, and that the client stays light.

A name added to or removed from ``conveyor`` or ``conveyor.client`` is a change to the
SDK's contract, so it has to show up here.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import conveyor
import conveyor.client
from conveyor import cli

CONVEYOR = [
    "AlreadyExists",
    "AsyncClient",
    "Client",
    "ConveyorError",
    "FailedPrecondition",
    "InvalidArgument",
    "NonRetryable",
    "NotFound",
    "Retry",
    "RetryPolicy",
    "TaskCancelled",
    "TaskContext",
    "TaskTimeout",
    "Unavailable",
    "task",
]

CLIENT = [
    "BATCH_OPERATIONS",
    "CATCH_UP_POLICIES",
    "IMAGE_FORMATS",
    "MAX_MESSAGE_BYTES",
    "OVERLAP_POLICIES",
    "PRIORITIES",
    "ROLES",
    "STATES",
    "TRANSFORMS",
    "AsyncClient",
    "Client",
    "EnumArg",
    "OptionArgs",
    "WatchPolicy",
    "ai_summarization",
    "batch_processing",
    "channel_options",
    "custom",
    "custom_result",
    "describe",
    "enum_value",
    "error_from_rpc",
    "field_violations",
    "grayscale",
    "image_processing",
    "options",
    "resize",
    "rotate",
    "schedule_spec",
    "text_processing",
    "thumbnail",
]

# What the server and bench extras bring; the SDK and the CLI's client commands must not
# import any of it.
HEAVY = (
    "PIL",
    "sqlalchemy",
    "asyncpg",
    "aiosqlite",
    "alembic",
    "nats",
    "prometheus_client",
    "jwt",
    "conveyor.bench._runner",
    "conveyor.dev",
    "conveyor.demo",
)


def _imported(code: str, names: tuple[str, ...]) -> list[str]:
    # A fresh interpreter: this one has imported everything the other tests use.
    script = f"import sys\n{code}\nprint(' '.join(m for m in {names!r} if m in sys.modules))\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.split()


def test_conveyor_exports_the_sdk() -> None:
    assert sorted(conveyor.__all__) == sorted(CONVEYOR)
    for name in CONVEYOR:
        assert getattr(conveyor, name) is not None


def test_client_exports_the_sdk() -> None:
    assert sorted(conveyor.client.__all__) == sorted(CLIENT)
    for name in CLIENT:
        assert getattr(conveyor.client, name) is not None


def test_sdk_imports_nothing_of_the_server_or_bench() -> None:
    assert _imported("import conveyor, conveyor.client", (*HEAVY, "conveyor.bench")) == []


def test_cli_imports_nothing_of_the_server() -> None:
    code = "import conveyor.cli, conveyor.cli.parser\nconveyor.cli.parser.build_parser()"
    assert _imported(code, HEAVY) == []


def test_dev_without_the_server_extra_names_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "SERVER_MODULES", ("conveyor_no_such_module",))
    assert cli.main(["dev"]) == 1
    err = capsys.readouterr().err
    assert "pip install 'conveyor[server]'" in err
    assert "Traceback" not in err
