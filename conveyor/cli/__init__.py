"""The ``conveyor`` command: submit, get, list, watch, cancel, retry and delete tasks, and
``dev``; finished tasks in bulk (``purge``); periodic schedules (``schedule ...``), each
type's queue (``pause``, ``resume``, ``queues``, ``limit``) and API keys (``auth ...``).

Every call goes through the SDK (:mod:`conveyor.client`). Failures print one line to
stderr and exit 2 for a bad request (or command line), 1 for anything else; a task
that is watched exits 0 only when it completes::

    $ conveyor submit text_processing --text ""
    error: invalid argument: text_processing.text: must not be empty
    $ echo $?
    2

``conveyor dev`` is implemented by :mod:`conveyor.dev` (``main(argv) -> int``) and
``conveyor bench`` by :mod:`conveyor.bench`, imported only when asked for: the client
commands work with the base install, and those two name the extra they need.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

from conveyor.cli.commands import run
from conveyor.cli.errors import MissingExtra, UsageError
from conveyor.cli.parser import build_parser, dev_arguments
from conveyor.cli.render import Output
from conveyor.client import describe
from conveyor.config import ClientSettings, ConfigError, load_environ
from conveyor.errors import ConveyorError, InvalidArgument, Unauthenticated, Unavailable

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _fail(message: str, code: int) -> int:
    # One line, even when a server message spans several.
    print("error: " + " ".join(message.split()), file=sys.stderr)
    return code


# What the services import from the server extra; `conveyor dev` checks them up front
# because its children would otherwise each die on an ImportError.
SERVER_MODULES = (
    "grpc_health",
    "grpc_reflection",
    "nats",
    "sqlalchemy",
    "aiosqlite",
    "alembic",
    "PIL",
    "prometheus_client",
    "croniter",
    "cryptography",
    "jwt",
)


def _server_missing() -> str | None:
    for name in SERVER_MODULES:
        if importlib.util.find_spec(name) is None:
            return name
    return None


def _run_dev(argv: list[str]) -> int:
    missing = _server_missing()
    if missing is not None:
        return _fail(str(MissingExtra("conveyor dev", "server", missing)), EXIT_FAILED)
    try:
        dev = importlib.import_module("conveyor.dev")
    except ModuleNotFoundError as exc:
        if exc.name != "conveyor.dev":
            raise
        return _fail("conveyor dev is not available in this installation", EXIT_FAILED)
    try:
        return int(dev.main(argv))
    except SystemExit as exc:  # keep main() in-process
        if isinstance(exc.code, int):
            return exc.code  # its argparse, which printed the usage
        return _fail(str(exc.code or "conveyor dev stopped"), EXIT_FAILED)


def _address(args: argparse.Namespace, settings: ClientSettings) -> str:
    addr = getattr(args, "addr", None)
    return str(addr) if addr else settings.gateway_addr


def _api_key(args: argparse.Namespace, settings: ClientSettings) -> str:
    """The key of --api-key-file, else CONVEYOR_API_KEY's (never one from the command
    line, which every user of the machine can read in ``ps``)."""
    path = getattr(args, "api_key_file", None)
    if not path:
        return settings.api_key
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise UsageError(f"cannot read --api-key-file {path}: {exc.strerror or exc}") from None


def _parse(argv: list[str]) -> argparse.Namespace | int:
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:
        # argparse has printed usage or help; hand its status back instead of exiting,
        # so main() is callable in-process.
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line (``sys.argv[1:]`` by default) and returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        dev_argv = dev_arguments(arguments)
        if dev_argv is not None:
            return _run_dev(dev_argv)
        args = _parse(arguments)
        if isinstance(args, int):
            return args
        settings = ClientSettings.from_env(load_environ())
        out = Output(bool(getattr(args, "json", False)))
        namespace = getattr(args, "namespace", None) or settings.namespace
        api_key = _api_key(args, settings)
        return asyncio.run(run(args, _address(args, settings), out, api_key, namespace))
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except InvalidArgument as exc:
        return _fail(describe(exc), EXIT_USAGE)
    except (UsageError, ConfigError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except MissingExtra as exc:
        return _fail(str(exc), EXIT_FAILED)
    except Unauthenticated as exc:
        hint = " (set CONVEYOR_API_KEY or --api-key-file)"
        return _fail(describe(exc) + hint, EXIT_FAILED)
    except Unavailable as exc:
        hint = (
            " (is the gateway running? set --addr or CONVEYOR_GATEWAY_ADDR; one serving TLS "
            "needs CONVEYOR_TLS_CA or CONVEYOR_TLS=1)"
        )
        return _fail(describe(exc) + hint, EXIT_FAILED)
    except ConveyorError as exc:
        return _fail(describe(exc), EXIT_FAILED)
    except Exception as exc:  # the promise is one line, never a traceback
        return _fail(f"unexpected {type(exc).__name__}: {exc}", EXIT_FAILED)
