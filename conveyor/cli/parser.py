"""The command line of ``conveyor``: every subcommand and flag, and nothing else.

``--addr``, ``--json``, ``--namespace`` and ``--api-key-file`` are accepted before or
after the subcommand, as people type them in both places. There is no flag taking the
API key itself: a command line shows in ``ps`` to everyone on the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Sequence
from typing import Any

from conveyor.cli.bench import add_arguments as add_bench_arguments
from conveyor.cli.keys import add_arguments as add_key_arguments
from conveyor.cli.schedules import add_arguments as add_schedule_arguments
from conveyor.cli.stats import add_arguments as add_stats_arguments
from conveyor.cli.stats import window_seconds
from conveyor.client import (
    BATCH_OPERATIONS,
    IMAGE_FORMATS,
    PRIORITIES,
    STATES,
    TRANSFORMS,
    grayscale,
    resize,
    rotate,
    thumbnail,
)
from conveyor.tasks import BUILTIN_TYPES, TERMINAL_STATES

EPILOG = """\
examples:
  conveyor submit text_processing --text "Hello world" --transform upper slug --watch
  conveyor submit batch_processing --items 1 2 3 --operation square
  conveyor submit image_processing --image cat.png --thumbnail 128x128 --output thumb.png
  conveyor submit send_email --payload '{"to": "a@example.com"}' --label team=web
  conveyor list --state running --state retrying
  conveyor watch --label team=web               # every change of the team's tasks
  conveyor --json get 01jb2c3d4e5f6g7h8j9k0m1n2p
  conveyor schedule create nightly --cron "0 3 * * *" --tz Europe/Paris send_report
  conveyor pause image_processing
  conveyor limit image_processing --max-concurrency 3 --max-per-second 10
  conveyor purge --state failed --older-than 30d
  conveyor auth create-key --namespace team-a --role submitter --expires 90d
  CONVEYOR_API_KEY=cvk_... conveyor --namespace team-a list
"""


def label(text: str) -> tuple[str, str]:
    """Parses key=value."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value


def _size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit()):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}")
    return int(width), int(height)


def _datetime(text: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time, got {text!r}") from None


class _ImageOp(argparse.Action):
    """Appends an image operation to one shared list, so they apply in command-line order."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        ops = list(getattr(namespace, self.dest, None) or [])
        if option_string == "--grayscale":
            ops.append(grayscale())
        elif option_string == "--rotate":
            ops.append(rotate(float(str(values))))
        else:
            width, height = _size(str(values))
            ops.append(
                resize(width, height) if option_string == "--resize" else thumbnail(width, height)
            )
        setattr(namespace, self.dest, ops)


class _NoKeyHere(argparse.Action):
    """``--api-key``: refused without echoing it (and without argparse taking it as an
    abbreviation of ``--api-key-file``)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        parser.error(
            "an API key on the command line shows in ps to every user: "
            "set CONVEYOR_API_KEY or use --api-key-file"
        )


VALUED_GLOBALS = ("--addr", "--namespace", "--api-key-file")
"""Global flags that take a value (``dev_arguments`` steps over it)."""


def _common(namespace: bool = True) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS lets the flag sit before or after the subcommand without one hiding the other.
    common.add_argument(
        "--addr",
        default=argparse.SUPPRESS,
        help="gateway host:port (default: $CONVEYOR_GATEWAY_ADDR or 127.0.0.1:50051)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="machine output: one JSON document (JSON lines for watch)",
    )
    common.add_argument(
        "--api-key-file",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="read the API key from FILE (default: $CONVEYOR_API_KEY)",
    )
    common.add_argument(
        "--api-key", action=_NoKeyHere, default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    if namespace:
        common.add_argument(
            "--namespace",
            default=argparse.SUPPRESS,
            help="the namespace to work in (default: $CONVEYOR_NAMESPACE, else the key's own)",
        )
    return common


def _add_submit(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "submit",
        parents=[common],
        help="queue a task",
        description="Queue a task. TYPE is a built-in type "
        f"({', '.join(BUILTIN_TYPES)}) or a registered custom type.",
    )
    add_task_arguments(p)
    p.add_argument("--output", metavar="FILE", help="wait, then write the result image to FILE")
    p.add_argument("--watch", action="store_true", help="follow the task until it ends")


def add_task_arguments(p: argparse.ArgumentParser) -> None:
    """TYPE and the flags building its request: ``submit`` and ``schedule create``."""
    p.add_argument("type", metavar="TYPE")
    text = p.add_mutually_exclusive_group()
    text.add_argument("--text", help="text of text_processing / ai_summarization")
    text.add_argument("--text-file", metavar="FILE", help="read the text from FILE (- = stdin)")
    p.add_argument(
        "--transform",
        dest="transforms",
        action="extend",
        nargs="+",
        choices=list(TRANSFORMS),
        metavar="NAME",
        help=f"text transforms, in order: {', '.join(TRANSFORMS)}",
    )
    p.add_argument("--top-words", type=int, metavar="N", help="how many frequent words to report")
    p.add_argument("--max-sentences", type=int, metavar="N", help="longest summary in sentences")
    items = p.add_mutually_exclusive_group()
    items.add_argument("--items", action="extend", nargs="+", metavar="ITEM", help="batch items")
    items.add_argument("--items-file", metavar="FILE", help="batch items, one per line")
    p.add_argument("--operation", choices=list(BATCH_OPERATIONS), help="batch operation")
    p.add_argument("--chunk-size", type=int, metavar="N", help="batch items per chunk")
    p.add_argument("--image", metavar="FILE", help="image file to process")
    p.add_argument("--resize", dest="image_ops", action=_ImageOp, metavar="WxH")
    p.add_argument("--thumbnail", dest="image_ops", action=_ImageOp, metavar="WxH")
    p.add_argument("--grayscale", dest="image_ops", action=_ImageOp, nargs=0)
    p.add_argument("--rotate", dest="image_ops", action=_ImageOp, metavar="DEG")
    p.add_argument("--format", choices=list(IMAGE_FORMATS), help="output image format")
    payload = p.add_mutually_exclusive_group()
    payload.add_argument("--payload", metavar="JSON", help="custom task payload, a JSON object")
    payload.add_argument("--payload-file", metavar="FILE", help="custom task payload file")
    opts = p.add_argument_group("options")
    opts.add_argument("--max-attempts", type=int, metavar="N")
    opts.add_argument("--timeout", type=float, metavar="SEC", help="time limit per attempt")
    opts.add_argument("--priority", choices=list(PRIORITIES))
    opts.add_argument("--idempotency-key", metavar="KEY")
    opts.add_argument("--label", dest="labels", type=label, action="append", metavar="K=V")
    when = opts.add_mutually_exclusive_group()
    when.add_argument("--delay", type=float, metavar="SEC", help="start no sooner than SEC")
    when.add_argument("--run-at", type=_datetime, metavar="TIME", help="ISO 8601 start time")


def _add_delete_and_purge(sub: Any, common: argparse.ArgumentParser) -> None:
    sub.add_parser(
        "delete", parents=[common], help="delete a finished task and its history"
    ).add_argument("id")
    finished = [name for name in STATES if STATES[name] in TERMINAL_STATES]
    purge = sub.add_parser(
        "purge", parents=[common], help="delete finished tasks older than an age (operators)"
    )
    purge.add_argument(
        "--older-than",
        type=window_seconds,
        required=True,
        metavar="AGE",
        help="finished at least this long ago, e.g. 12h, 30d (0 for any age)",
    )
    purge.add_argument(
        "--state",
        dest="states",
        action="append",
        choices=finished,
        help="only tasks in this state (default: every finished state)",
    )
    purge.add_argument("--type", default="", help="only tasks of this type")


def build_parser() -> argparse.ArgumentParser:
    """The ``conveyor`` argument parser."""
    common = _common()
    parser = argparse.ArgumentParser(
        prog="conveyor",
        parents=[common],
        description="Submit, inspect and watch Conveyor tasks.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_submit(sub, common)
    get = sub.add_parser("get", parents=[common], help="show a task")
    get.add_argument("id")
    get.add_argument(
        "--input", action="store_true", help="show the task's input too (image bytes left out)"
    )
    get.add_argument(
        "--traceback",
        action="store_true",
        help="show the error's whole traceback (by default its last lines)",
    )
    get.add_argument(
        "--output",
        metavar="FILE",
        help="write the complete result to FILE: an image as its bytes, anything else as JSON",
    )
    ls = sub.add_parser("list", parents=[common], help="list tasks, newest first")
    ls.add_argument("--state", dest="states", action="append", choices=list(STATES))
    ls.add_argument("--type", default="")
    ls.add_argument("--label", dest="labels", type=label, action="append", metavar="K=V")
    ls.add_argument("--limit", type=int, default=50, help="most tasks to show (default 50)")
    ls.add_argument("--page-token", default="", help="continue where a listing stopped")
    watch = sub.add_parser(
        "watch",
        parents=[common],
        help="follow a task live (exit 0 when it completes), or without an id every "
        "change of the tasks that match --state/--type/--label until Ctrl-C",
    )
    watch.add_argument("id", nargs="?", help="the task to follow")
    watch.add_argument("--state", dest="states", action="append", choices=list(STATES))
    watch.add_argument("--type", default="")
    watch.add_argument("--label", dest="labels", type=label, action="append", metavar="K=V")
    sub.add_parser("cancel", parents=[common], help="cancel a task").add_argument("id")
    retry = sub.add_parser(
        "retry",
        parents=[common],
        help="run a failed or cancelled task again (or every failed one with --failed)",
    )
    retry.add_argument("id", nargs="?", help="the task to run again")
    retry.add_argument(
        "--failed", action="store_true", help="run every FAILED task again (the dead letters)"
    )
    retry.add_argument("--type", default="", help="with --failed: only tasks of this type")
    retry.add_argument(
        "--label",
        dest="labels",
        type=label,
        action="append",
        metavar="K=V",
        help="with --failed: only tasks with this label",
    )
    _add_delete_and_purge(sub, common)
    sub.add_parser("dev", help="run the whole system locally (see conveyor dev --help)")
    add_bench_arguments(
        sub.add_parser("bench", parents=[common], help="measure a running system (noop tasks)")
    )
    add_schedule_arguments(sub, common, add_task_arguments)
    add_stats_arguments(sub, common)
    add_key_arguments(sub, _common(namespace=False))
    return parser


def dev_arguments(argv: Sequence[str]) -> list[str] | None:
    """The arguments after ``dev`` when argv runs ``conveyor dev``, else None.

    ``dev`` owns its flags, so they are handed over untouched instead of going through
    this parser, which would reject them.
    """
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in VALUED_GLOBALS:
            i += 2
        elif arg == "--json" or arg.startswith(tuple(f"{flag}=" for flag in VALUED_GLOBALS)):
            i += 1
        else:
            return list(argv[i + 1 :]) if arg == "dev" else None
    return None
