"""How the CLI shows schedules and queues: rich tables for people, protobuf JSON for programs.

JSON output is the canonical mapping of the RPC's response (or of its one message), as
``conveyor get`` prints a Task.
"""

from __future__ import annotations

from collections.abc import Mapping

from rich import box
from rich.markup import escape
from rich.table import Table

from conveyor.api.queues.v1 import queues_pb2
from conveyor.api.schedules.v1 import schedules_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.auth.principal import DEFAULT_NAMESPACE
from conveyor.cli.render import Output, _state, _time
from conveyor.client import CATCH_UP_POLICIES, OVERLAP_POLICIES
from conveyor.tasks import seconds, task_type_of

_SHORT_TIME = "%m-%d %H:%M:%S"
_PRIORITIES = ("high", "normal", "low")
"""The order of Queue.waiting."""


def _span(total: float) -> str:
    """90 -> 1m30s, 3600 -> 1h, 0.5 -> 0.5s."""
    if total < 60 or total != int(total):
        return f"{total:g}s"
    rest, parts = int(total), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


def timing(spec: schedules_pb2.ScheduleSpec) -> str:
    """When a schedule ticks, in words: ``cron 0 7 * * * (Europe/Paris)`` or ``every 1h``."""
    if spec.WhichOneof("timing") == "cron":
        return f"cron {escape(spec.cron)} ({escape(spec.time_zone or 'UTC')})"
    if spec.HasField("interval"):
        return f"every {_span(seconds(spec.interval))}"
    return "-"


def _policy(names: Mapping[str, int], value: int) -> str:
    if value == 0:
        return "skip"  # unset: the gateway's default
    return next((name for name, number in names.items() if number == value), str(value))


def _paused(paused: bool) -> str:
    return "[yellow]paused[/]" if paused else "[green]active[/]"


def _template_options(options: tasks_pb2.TaskOptions) -> str:
    parts = []
    if options.priority:
        parts.append(
            "priority "
            + tasks_pb2.TaskPriority.Name(options.priority).removeprefix("TASK_PRIORITY_").lower()
        )
    if options.max_attempts:
        parts.append(f"max attempts {options.max_attempts}")
    if options.HasField("timeout"):
        parts.append(f"timeout {seconds(options.timeout):g}s")
    if options.HasField("delay"):
        parts.append(f"delay {seconds(options.delay):g}s")
    if options.labels:
        parts.append("labels " + ", ".join(f"{k}={v}" for k, v in sorted(options.labels.items())))
    return escape("; ".join(parts))


def render_schedule(out: Output, schedule: schedules_pb2.Schedule, *, brief: bool = False) -> None:
    """One schedule: every field, or with ``brief`` one line (after pause and resume)."""
    if out.as_json:
        out.json(schedule)
        return
    spec = schedule.spec
    next_tick = (
        _time(schedule, "next_tick_time")
        if schedule.HasField("next_tick_time") and not schedule.paused
        else ""
    )
    if brief:
        after = f", next tick {next_tick}" if next_tick else ""
        out.console.print(f"{escape(schedule.id)} {_paused(schedule.paused)}{after}")
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("id", escape(schedule.id))
    table.add_row("namespace", escape(schedule.namespace or DEFAULT_NAMESPACE))
    if spec.description:
        table.add_row("description", escape(spec.description))
    table.add_row("state", _paused(schedule.paused))
    table.add_row("timing", timing(spec))
    table.add_row("task", escape(task_type_of(spec.task)))
    if options := _template_options(spec.task.options):
        table.add_row("task options", options)
    table.add_row("overlap", _policy(OVERLAP_POLICIES, spec.overlap))
    table.add_row("catch-up", _policy(CATCH_UP_POLICIES, spec.catch_up))
    for field, name in (("create_time", "created"), ("last_tick_time", "last tick")):
        if schedule.HasField(field):
            table.add_row(name, _time(schedule, field))
    if next_tick:
        table.add_row("next tick", next_tick)
    if schedule.last_task_id:
        table.add_row("last task", schedule.last_task_id)
    table.add_row("tasks created", f"{schedule.created_tasks:,}")
    table.add_row("skipped ticks", f"{schedule.skipped_ticks:,}")
    out.console.print(table)


def render_schedules(out: Output, schedules: list[schedules_pb2.Schedule]) -> None:
    """Schedules, one row each."""
    if out.as_json:
        out.json(schedules_pb2.ListSchedulesResponse(schedules=schedules))
        return
    if not schedules:
        out.note("no schedules")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("ID", no_wrap=True)
    table.add_column("STATE", no_wrap=True)
    table.add_column("TIMING", no_wrap=True)
    table.add_column("TYPE", no_wrap=True)
    table.add_column("NEXT TICK", no_wrap=True)
    table.add_column("LAST TASK", no_wrap=True)
    table.add_column("TASKS", justify="right", no_wrap=True)
    table.add_column("SKIPPED", justify="right", no_wrap=True)
    table.add_column("DESCRIPTION", overflow="fold")
    for s in schedules:
        next_tick = (
            _time(s, "next_tick_time", _SHORT_TIME)
            if s.HasField("next_tick_time") and not s.paused
            else ""
        )
        table.add_row(
            escape(s.id),
            _paused(s.paused),
            timing(s.spec),
            escape(task_type_of(s.spec.task)),
            next_tick,
            s.last_task_id,
            f"{s.created_tasks:,}",
            f"{s.skipped_ticks:,}",
            escape(s.spec.description),
        )
    out.console.print(table)


def render_deleted(out: Output, schedule_id: str) -> None:
    """The confirmation of ``schedule delete``."""
    if out.as_json:
        out.json(schedules_pb2.DeleteScheduleResponse())
        return
    out.console.print(f"deleted schedule {escape(schedule_id)}")


def render_triggered(out: Output, schedule_id: str, task: tasks_pb2.Task) -> None:
    """The task ``schedule trigger`` created."""
    if out.as_json:
        out.json(schedules_pb2.TriggerScheduleResponse(task=task))
        return
    out.console.print(
        f"{task.id} {_state(task.state)} {escape(task.type)} (schedule {escape(schedule_id)})"
    )


def limits_text(limits: queues_pb2.QueueLimits) -> str:
    """A queue's limits in words: ``3 running, 2.5/s``, or ``none``."""
    parts = []
    if limits.max_concurrency:
        parts.append(f"{limits.max_concurrency:,} running")
    if limits.max_per_second:
        parts.append(f"{limits.max_per_second:g}/s")
    return ", ".join(parts) or "none"


def _waiting(queue: queues_pb2.Queue) -> list[int]:
    counts = list(queue.waiting)[: len(_PRIORITIES)]
    return counts + [0] * (len(_PRIORITIES) - len(counts))


def render_queue(out: Output, queue: queues_pb2.Queue) -> None:
    """One queue on one line (after pause, resume and limit)."""
    if out.as_json:
        out.json(queue)
        return
    waiting = ", ".join(f"{n:,} {p}" for n, p in zip(_waiting(queue), _PRIORITIES, strict=True))
    out.console.print(
        f"{escape(queue.type)} {_paused(queue.paused)}; limits: {limits_text(queue.limits)}; "
        f"waiting: {waiting}; in flight: {queue.in_flight:,}"
    )


def render_queues(out: Output, queues: list[queues_pb2.Queue]) -> None:
    """Every queue, one row each; waiting counts by priority."""
    if out.as_json:
        out.json(queues_pb2.ListQueuesResponse(queues=queues))
        return
    if not queues:
        out.note("no task types registered")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("TYPE", no_wrap=True)
    table.add_column("STATE", no_wrap=True)
    for priority in _PRIORITIES:
        table.add_column(f"WAITING {priority.upper()}", justify="right", no_wrap=True)
    table.add_column("IN FLIGHT", justify="right", no_wrap=True)
    table.add_column("MAX RUNNING", justify="right", no_wrap=True)
    table.add_column("MAX/S", justify="right", no_wrap=True)
    table.add_column("DESCRIPTION", overflow="fold")
    for q in queues:
        table.add_row(
            escape(q.type),
            _paused(q.paused),
            *(f"{n:,}" for n in _waiting(q)),
            f"{q.in_flight:,}",
            f"{q.limits.max_concurrency:,}" if q.limits.max_concurrency else "-",
            f"{q.limits.max_per_second:g}" if q.limits.max_per_second else "-",
            escape(q.description),
        )
    out.console.print(table)
