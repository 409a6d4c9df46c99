"""When periodic schedules tick: cron expressions in a time zone, or fixed intervals.

Pure functions over ScheduleSpec, shared by the gateway (validation, the first tick) and
the scheduler (every later tick).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import zoneinfo

from croniter import croniter

from conveyor.api.schedules.v1 import schedules_pb2
from conveyor.errors import FieldViolation
from conveyor.tasks import seconds

SCHEDULE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
MIN_INTERVAL = 1.0
MAX_INTERVAL = 366 * 24 * 3600.0
ON_TIME = dt.timedelta(seconds=5)
"""A tick handled later than this after its time counts as missed (the scheduler was
down), and the catch-up policy decides what happens to it."""
MAX_STEPS = 100_000


def spec_violations(
    spec: schedules_pb2.ScheduleSpec, prefix: str = "spec."
) -> list[FieldViolation]:
    """What is wrong with a spec's timing and policies (the task template is checked by
    the gateway's request validation)."""
    problems: list[FieldViolation] = []
    timing = spec.WhichOneof("timing")
    if timing is None:
        problems.append(FieldViolation(f"{prefix}timing", "set cron or interval"))
    elif timing == "cron":
        if len(spec.cron) > 200 or not croniter.is_valid(spec.cron):
            problems.append(
                FieldViolation(f"{prefix}cron", f"not a cron expression: {spec.cron!r}")
            )
    else:
        every = seconds(spec.interval)
        if not MIN_INTERVAL <= every <= MAX_INTERVAL:
            problems.append(
                FieldViolation(
                    f"{prefix}interval", f"must be from {MIN_INTERVAL:g}s to {MAX_INTERVAL:g}s"
                )
            )
    if spec.time_zone:
        try:
            zoneinfo.ZoneInfo(spec.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            problems.append(
                FieldViolation(f"{prefix}time_zone", f"unknown time zone {spec.time_zone!r}")
            )
    if spec.overlap not in schedules_pb2.OverlapPolicy.values():
        problems.append(FieldViolation(f"{prefix}overlap", "unknown overlap policy"))
    if spec.catch_up not in schedules_pb2.CatchUpPolicy.values():
        problems.append(FieldViolation(f"{prefix}catch_up", "unknown catch-up policy"))
    if len(spec.description) > 500:
        problems.append(FieldViolation(f"{prefix}description", "at most 500 characters"))
    return problems


def next_tick(
    spec: schedules_pb2.ScheduleSpec, after: dt.datetime, anchor: dt.datetime
) -> dt.datetime:
    """The first tick strictly after ``after``. Intervals count from ``anchor`` (the
    schedule's creation), so ticks do not drift with processing delays."""
    if spec.WhichOneof("timing") == "cron":
        zone = zoneinfo.ZoneInfo(spec.time_zone or "UTC")
        following: dt.datetime = croniter(spec.cron, after.astimezone(zone)).get_next(dt.datetime)
        return following.astimezone(dt.UTC)
    every = seconds(spec.interval)
    elapsed = (after - anchor).total_seconds()
    steps = math.floor(elapsed / every) + 1 if elapsed >= 0 else 0
    return anchor + dt.timedelta(seconds=steps * every)


def latest_due(
    spec: schedules_pb2.ScheduleSpec, first_due: dt.datetime, now: dt.datetime, anchor: dt.datetime
) -> tuple[dt.datetime, int]:
    """The last tick at or before ``now``, starting from the due tick ``first_due``, and
    how many ticks before it were passed over."""
    if spec.WhichOneof("timing") == "interval":
        every = seconds(spec.interval)
        skipped = math.floor((now - first_due).total_seconds() / every)
        return first_due + dt.timedelta(seconds=skipped * every), skipped
    tick, skipped = first_due, 0
    for _ in range(MAX_STEPS):
        following = next_tick(spec, tick, anchor)
        if following > now:
            break
        tick, skipped = following, skipped + 1
    return tick, skipped


def on_time(tick: dt.datetime, skipped: int, now: dt.datetime) -> bool:
    """True when a tick is handled in its normal course, not after downtime."""
    return skipped == 0 and now - tick <= ON_TIME
