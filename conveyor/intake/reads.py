"""Validation of the requests that read and manage recorded tasks: get, list, stats and
purge. The store serves them; the rules are the shared ones of ``conveyor.intake.checks``."""

from __future__ import annotations

import datetime as dt

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.errors import FieldViolation, InvalidArgument
from conveyor.ids import is_task_id
from conveyor.intake.checks import (
    Collector,
    check_enum,
    check_labels,
    check_type_name,
    duration_error,
    timestamp_error,
)
from conveyor.tasks import TERMINAL_STATES

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_PAGE_TOKEN_CHARS = 512
STATS_DEFAULT_WINDOW = dt.timedelta(hours=1)
STATS_MAX_WINDOW = dt.timedelta(days=31)
STATS_MAX_TOP_ERRORS = 50
STATS_MIN_BUCKET = dt.timedelta(seconds=1)
STATS_MAX_BUCKETS = 1440
PURGE_MAX_AGE = dt.timedelta(days=36_500)

_STATES: dict[str, int] = dict(tasks_pb2.TaskState.items())
_VIEWS: dict[str, int] = dict(tasks_pb2.TaskView.items())


def validate_task_id(task_id: str, field: str = "task_id") -> None:
    """Raises InvalidArgument unless task_id has the shape of a task id."""
    if not task_id:
        raise InvalidArgument.for_fields([FieldViolation(field, "must not be empty")])
    if not is_task_id(task_id):
        raise InvalidArgument.for_fields(
            [FieldViolation(field, "must be a 26-character task id (lower-case base32)")]
        )


def validate_get(request: tasks_pb2.GetTaskRequest) -> bool:
    """Checks a get request; returns whether it asks for the FULL view (with the input)."""
    validate_task_id(request.task_id)
    c = Collector()
    check_enum(c, "view", _VIEWS, request.view, allow_zero=True)
    c.raise_if_any()
    return request.view == tasks_pb2.TASK_VIEW_FULL


def validate_list(request: tasks_pb2.ListTasksRequest) -> int:
    """Raises InvalidArgument naming every invalid filter; returns the page size to use.

    A page size of 0 means DEFAULT_PAGE_SIZE and one above MAX_PAGE_SIZE is clamped to it
    rather than refused, so a client asking for "everything" still gets pages.
    """
    c = Collector()
    for i, state in enumerate(request.states):
        check_enum(c, f"states[{i}]", _STATES, state, allow_zero=False)
    check_type_name(c, "type", request.type)
    check_labels(c, "labels", request.labels)
    if len(request.page_token) > MAX_PAGE_TOKEN_CHARS:
        c.add("page_token", f"must be at most {MAX_PAGE_TOKEN_CHARS} characters")
    bounds = [name for name in ("created_after", "created_before") if request.HasField(name)]
    for name in bounds:
        if problem := timestamp_error(getattr(request, name)):
            c.add(name, problem)
    if (
        len(bounds) == 2
        and not c.found
        and request.created_before.ToDatetime() <= request.created_after.ToDatetime()
    ):
        c.add("created_before", "must be later than created_after")
    c.raise_if_any()
    return page_size_of(request)


def created_range(
    request: tasks_pb2.ListTasksRequest,
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The list request's created_after and created_before as UTC times (None: unset)."""
    after = request.created_after.ToDatetime(dt.UTC) if request.HasField("created_after") else None
    before = (
        request.created_before.ToDatetime(dt.UTC) if request.HasField("created_before") else None
    )
    return after, before


def validate_watch_tasks(request: tasks_pb2.WatchTasksRequest) -> None:
    """Raises InvalidArgument naming every invalid filter (the same rules as ListTasks')."""
    c = Collector()
    for i, state in enumerate(request.states):
        check_enum(c, f"states[{i}]", _STATES, state, allow_zero=False)
    check_type_name(c, "type", request.type)
    check_labels(c, "labels", request.labels)
    c.raise_if_any()


def page_size_of(request: tasks_pb2.ListTasksRequest) -> int:
    """The page size a list request gets: 0 means the default, and large sizes are clamped."""
    return min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def validate_stats(
    request: tasks_pb2.GetTaskStatsRequest,
) -> tuple[dt.timedelta, int, dt.timedelta | None]:
    """Checks a stats request; returns its window (default one hour), how many top
    errors to report (default 5) and the width of its series' buckets (None: no series)."""
    c = Collector()
    window = STATS_DEFAULT_WINDOW
    if request.HasField("window"):
        problem = duration_error(request.window, STATS_MAX_WINDOW)
        if problem:
            c.add("window", problem)
        elif request.window.ToTimedelta() > dt.timedelta(0):
            window = request.window.ToTimedelta()
    check_type_name(c, "type", request.type)
    if request.top_errors > STATS_MAX_TOP_ERRORS:
        c.add("top_errors", f"must be at most {STATS_MAX_TOP_ERRORS}")
    bucket = None
    if request.HasField("bucket"):
        problem = duration_error(request.bucket, STATS_MAX_WINDOW)
        width = request.bucket.ToTimedelta()
        if problem:
            c.add("bucket", problem)
        elif width and width < STATS_MIN_BUCKET:
            c.add("bucket", f"must be at least {STATS_MIN_BUCKET.seconds} second")
        elif width and -(-window // width) > STATS_MAX_BUCKETS:
            c.add("bucket", f"makes more than {STATS_MAX_BUCKETS} buckets of the window")
        elif width:
            bucket = width
    c.raise_if_any()
    return window, request.top_errors or 5, bucket


def validate_purge(request: tasks_pb2.PurgeTasksRequest) -> tuple[list[int], dt.timedelta]:
    """Checks a purge request; returns its states (every terminal one when none is
    given) and how long ago the tasks must have finished (0: any time)."""
    c = Collector()
    for i, state in enumerate(request.states):
        if state not in TERMINAL_STATES:
            c.add(f"states[{i}]", "must be COMPLETED, FAILED or CANCELLED: only finished tasks")
    check_type_name(c, "type", request.type)
    older_than = dt.timedelta(0)
    if request.HasField("older_than"):
        problem = duration_error(request.older_than, PURGE_MAX_AGE)
        if problem:
            c.add("older_than", problem)
        else:
            older_than = request.older_than.ToTimedelta()
    c.raise_if_any()
    return sorted(set(request.states) or TERMINAL_STATES), older_than
