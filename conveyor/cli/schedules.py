"""``conveyor schedule ...``, ``pause``, ``resume``, ``queues`` and ``limit``: their flags
and what they do.

``schedule create`` takes TYPE and the task flags of ``conveyor submit`` (the parser
hands over the function that declares them) and builds its template with
:func:`~conveyor.cli.requests.submit_request`, so a template means what a submit means.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Awaitable, Callable
from typing import Any

from conveyor.cli.errors import UsageError
from conveyor.cli.render import Output
from conveyor.cli.render_schedules import (
    render_deleted,
    render_queue,
    render_queues,
    render_schedule,
    render_schedules,
    render_triggered,
)
from conveyor.cli.requests import submit_request
from conveyor.client import CATCH_UP_POLICIES, OVERLAP_POLICIES, AsyncClient

MAX_UINT32 = 2**32 - 1
Handler = Callable[[AsyncClient, Output, argparse.Namespace], Awaitable[int]]

COMMANDS = ("schedule", "pause", "resume", "queues", "limit")
"""The top-level commands this module runs."""

CREATE_EPILOG = """\
examples:
  conveyor schedule create digest --cron "0 7 * * mon-fri" --tz Europe/Paris \\
      text_processing --text "daily digest" --transform upper
  conveyor schedule create cleanup --every 3600 --overlap skip --catch-up run_once \\
      purge_old --payload '{"days": 30}' --priority low --label team=ops
"""


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_UINT32:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0, got {text!r}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    return value


def add_arguments(
    sub: Any,
    common: argparse.ArgumentParser,
    task_arguments: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Adds the schedule and queue commands to the ``conveyor`` subparsers.

    ``task_arguments`` declares TYPE and the task flags of ``conveyor submit``.
    """
    schedule = sub.add_parser(
        "schedule",
        parents=[common],
        help="periodic schedules: create, list, get, pause, resume, delete, trigger",
    )
    actions = schedule.add_subparsers(dest="schedule_command", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create",
        parents=[common],
        help="create a schedule submitting a task on every tick",
        description="Create schedule ID: on every tick, queue a TYPE task built from the "
        "same flags as `conveyor submit`. Its tasks carry the schedule id.",
        epilog=CREATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    create.add_argument("id", metavar="ID", help="schedule id: a-z, 0-9, _ and -")
    when = create.add_argument_group("timing", "--cron or --every, one of them")
    timing = when.add_mutually_exclusive_group(required=True)
    timing.add_argument("--cron", metavar="EXPR", help='cron expression, e.g. "*/15 * * * *"')
    timing.add_argument("--every", type=_number, metavar="SECONDS", help="fixed interval")
    when.add_argument(
        "--tz", default="", metavar="ZONE", help="IANA time zone of --cron (default UTC)"
    )
    policy = create.add_argument_group("policies")
    policy.add_argument(
        "--overlap",
        choices=list(OVERLAP_POLICIES),
        default="skip",
        help="while the previous run is unfinished: skip the tick or allow it (default skip)",
    )
    policy.add_argument(
        "--catch-up",
        choices=list(CATCH_UP_POLICIES),
        default="skip",
        help="ticks missed while no scheduler ran: skip them or run once (default skip)",
    )
    policy.add_argument("--description", default="", help="a one-line description")
    task_arguments(create)
    actions.add_parser("list", parents=[common], help="list schedules")
    for name, text in (
        ("get", "show a schedule"),
        ("pause", "stop a schedule creating tasks"),
        ("resume", "resume a schedule from its next tick"),
        ("delete", "delete a schedule (its tasks are kept)"),
        ("trigger", "create a task from a schedule now"),
    ):
        actions.add_parser(name, parents=[common], help=text).add_argument("id", metavar="ID")

    pause = sub.add_parser(
        "pause", parents=[common], help="start no tasks of TYPE (submissions still accepted)"
    )
    pause.add_argument("type", metavar="TYPE")
    resume = sub.add_parser("resume", parents=[common], help="start tasks of a paused TYPE again")
    resume.add_argument("type", metavar="TYPE")
    sub.add_parser(
        "queues",
        parents=[common],
        help="every task type: paused, tasks waiting by priority, in flight, limits",
    )
    limit = sub.add_parser(
        "limit",
        parents=[common],
        help="set a task type's cluster-wide concurrency and rate limits",
        description="Set TYPE's limits across all workers. A limit not given is kept; "
        "0 removes it.",
    )
    limit.add_argument("type", metavar="TYPE")
    limit.add_argument(
        "--max-concurrency", type=_count, metavar="N", help="most tasks running at once"
    )
    limit.add_argument(
        "--max-per-second", type=_number, metavar="R", help="most tasks started per second"
    )


# --- schedules ------------------------------------------------------------------------------


async def schedule_create(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """``conveyor schedule create``."""
    if args.tz and args.cron is None:
        raise UsageError("--tz goes with --cron")
    schedule = await client.create_schedule(
        args.id,
        submit_request(args),
        cron=args.cron,
        interval=args.every,
        time_zone=args.tz,
        overlap=args.overlap,
        catch_up=args.catch_up,
        description=args.description,
    )
    render_schedule(out, schedule)
    return 0


async def schedule_list(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """``conveyor schedule list``."""
    render_schedules(out, await client.list_schedules())
    return 0


async def schedule_get(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """``conveyor schedule get``."""
    render_schedule(out, await client.get_schedule(args.id))
    return 0


async def schedule_pause(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """``conveyor schedule pause``."""
    render_schedule(out, await client.pause_schedule(args.id), brief=True)
    return 0


async def schedule_resume(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """``conveyor schedule resume``."""
    render_schedule(out, await client.resume_schedule(args.id), brief=True)
    return 0


async def schedule_delete(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """``conveyor schedule delete``."""
    await client.delete_schedule(args.id)
    render_deleted(out, args.id)
    return 0


async def schedule_trigger(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """``conveyor schedule trigger``: the task it created."""
    render_triggered(out, args.id, await client.trigger_schedule(args.id))
    return 0


# --- queues ---------------------------------------------------------------------------------


async def pause(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """``conveyor pause TYPE``."""
    render_queue(out, await client.pause_queue(args.type))
    return 0


async def resume(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """``conveyor resume TYPE``."""
    render_queue(out, await client.resume_queue(args.type))
    return 0


async def queues(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """``conveyor queues``."""
    render_queues(out, await client.list_queues())
    return 0


async def limit(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """``conveyor limit TYPE``: sets the limits given, keeping the other one."""
    if args.max_concurrency is None and args.max_per_second is None:
        raise UsageError("give --max-concurrency and/or --max-per-second (0 removes a limit)")
    concurrency, rate = args.max_concurrency, args.max_per_second
    if concurrency is None or rate is None:
        # SetQueueLimits replaces both limits; keep the one not given on the command line.
        current = next((q.limits for q in await client.list_queues() if q.type == args.type), None)
        if current is not None:
            concurrency = current.max_concurrency if concurrency is None else concurrency
            rate = current.max_per_second if rate is None else rate
    queue = await client.set_queue_limits(
        args.type, max_concurrency=concurrency or 0, max_per_second=rate or 0.0
    )
    render_queue(out, queue)
    return 0


_SCHEDULE_ACTIONS: dict[str, Handler] = {
    "create": schedule_create,
    "list": schedule_list,
    "get": schedule_get,
    "pause": schedule_pause,
    "resume": schedule_resume,
    "delete": schedule_delete,
    "trigger": schedule_trigger,
}
_QUEUE_COMMANDS: dict[str, Handler] = {
    "pause": pause,
    "resume": resume,
    "queues": queues,
    "limit": limit,
}


async def run_command(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """Runs one of :data:`COMMANDS` as parsed by :func:`add_arguments`."""
    if args.command == "schedule":
        return await _SCHEDULE_ACTIONS[args.schedule_command](client, out, args)
    return await _QUEUE_COMMANDS[args.command](client, out, args)
