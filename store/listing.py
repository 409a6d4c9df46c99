"""The ListTasks query: one statement per shape of filters, each read as an index range.

A page's values are named parameters (see list_values), so a statement is built and
compiled once per shape (how many states and labels, a type, a cursor), not per request.
"""

from __future__ import annotations

import builtins
import datetime as dt
import functools
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, bindparam, exists, select, tuple_, union_all

from store.models import task_labels, tasks
from store.pagination import Cursor
from store.rows import LISTED_COLUMNS


def _filters(
    states: int, typed: bool, labels: range, namespaced: bool
) -> builtins.list[ColumnElement[bool]]:
    """Conditions on the namespace, ``states`` bound states (any of), the type, and the
    labels numbered ``labels`` (all of), as named parameters: see list_values."""
    conditions: list[ColumnElement[bool]] = []
    if namespaced:
        conditions.append(tasks.c.namespace == bindparam("namespace"))
    if states == 1:
        conditions.append(tasks.c.state == bindparam("state_0"))
    elif states:
        conditions.append(tasks.c.state.in_([bindparam(f"state_{i}") for i in range(states)]))
    if typed:
        conditions.append(tasks.c.type == bindparam("task_type"))
    for i in labels:
        conditions.append(
            exists().where(
                task_labels.c.task_id == tasks.c.id,
                task_labels.c.key == bindparam(f"label_key_{i}"),
                task_labels.c.value == bindparam(f"label_value_{i}"),
            )
        )
    return conditions


def _after(create_time: Any = tasks.c.create_time, task_id: Any = tasks.c.id) -> Any:
    """Rows after the cursor in (create_time desc, id desc) order: one row-value comparison,
    which both databases answer with a range of an index ending in (create_time, id)."""
    bound = tuple_(
        bindparam("after_time", type_=tasks.c.create_time.type),
        bindparam("after_id", type_=tasks.c.id.type),
    )
    return tuple_(create_time, task_id) < bound


def _created(since: bool, until: bool, create_time: Any = tasks.c.create_time) -> list[Any]:
    """Rows created at or after ``created_after`` and before ``created_before`` (when
    given): bounds of the same index range the page reads in order."""
    conditions = []
    if since:
        conditions.append(create_time >= bindparam("created_after", type_=tasks.c.create_time.type))
    if until:
        conditions.append(create_time < bindparam("created_before", type_=tasks.c.create_time.type))
    return conditions


_NEWEST_FIRST = (tasks.c.create_time.desc(), tasks.c.id.desc())


@functools.lru_cache(maxsize=512)
def list_query(
    states: int,
    typed: bool,
    labels: int,
    after: bool,
    namespaced: bool = True,
    since: bool = False,
    until: bool = False,
) -> Select[Any]:
    """The page query of one shape (how many states and labels, a type, a cursor, one
    namespace or all, creation time bounds), with every value a named parameter (see
    list_values), so each shape is compiled once.

    Each filter reads one index range in page order. By label: the first label's (key,
    value, create_time, task_id) index drives, in order; the rest, the namespace among
    them, are filters. Several states: one ordered range per state, merged (an IN over
    the (namespace, state, create_time, id) index would sort every matching row).
    Otherwise the namespace's state or type index, or (namespace, create_time, id).
    """
    limit = bindparam("limit", type_=Integer)
    if labels:
        label = task_labels.alias("driving_label")
        conditions = [label.c.key == bindparam("label_key_0")]
        conditions.append(label.c.value == bindparam("label_value_0"))
        conditions += _filters(states, typed, range(1, labels), namespaced)
        if after:
            conditions.append(_after(label.c.create_time, label.c.task_id))
        conditions += _created(since, until, label.c.create_time)
        return (
            select(*LISTED_COLUMNS)
            .select_from(label.join(tasks, tasks.c.id == label.c.task_id))
            .where(*conditions)
            .order_by(label.c.create_time.desc(), label.c.task_id.desc())
            .limit(limit)
        )
    cursor = [_after()] if after else []
    cursor += _created(since, until)
    if states > 1:
        parts = [
            select(
                select(*LISTED_COLUMNS)
                .where(
                    tasks.c.state == bindparam(f"state_{i}"),
                    *_filters(0, typed, range(0), namespaced),
                )
                .where(*cursor)
                .order_by(*_NEWEST_FIRST)
                .limit(limit)
                .subquery()
            )
            for i in range(states)
        ]
        merged = union_all(*parts).subquery()
        return select(merged).order_by(merged.c.create_time.desc(), merged.c.id.desc()).limit(limit)
    return (
        select(*LISTED_COLUMNS)
        .where(*_filters(states, typed, range(0), namespaced), *cursor)
        .order_by(*_NEWEST_FIRST)
        .limit(limit)
    )


def list_values(
    states: builtins.list[int],
    task_type: str,
    labels: dict[str, str],
    cursor: Cursor | None,
    limit: int,
    namespace: str | None = None,
    created_after: dt.datetime | None = None,
    created_before: dt.datetime | None = None,
) -> dict[str, Any]:
    """The parameters of list_query for these filters (``namespace`` None: every one)."""
    values: dict[str, Any] = {"limit": limit}
    if created_after is not None:
        values["created_after"] = created_after
    if created_before is not None:
        values["created_before"] = created_before
    if namespace is not None:
        values["namespace"] = namespace
    for i, state in enumerate(states):
        values[f"state_{i}"] = state
    if task_type:
        values["task_type"] = task_type
    for i, (key, value) in enumerate(sorted(labels.items())):
        values[f"label_key_{i}"] = key
        values[f"label_value_{i}"] = value
    if cursor is not None:
        values["after_time"] = cursor.create_time
        values["after_id"] = cursor.task_id
    return values
