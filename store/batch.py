"""One batch of events applied in memory, then written: the store's write path.

The repository loads the tasks a batch touches, applies each event through the state
machine here (parking those that overtook their task's ``submitted``, see store.parking),
and writes the outcome with one bulk statement per table (store.bulk).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from store import convert, parking
from store.bulk import executemany
from store.db import InlineSqlite
from store.models import CURSOR_ID
from store.rows import INSERT_KEYS, aware, insert_row, sqlite_text, update_row
from store.screen import Problem, problem_against
from store.transitions import Event, Kind, Snapshot, transition

logger = logging.getLogger(__name__)

_CREATE_TIME = INSERT_KEYS.index("create_time")


@dataclass
class Batch:
    """The in-memory outcome of one batch before it is written."""

    loaded: dict[str, Snapshot]
    builder: convert.TaskBuilder  # one per batch: kept longer, its entries made the GC work
    current: dict[str, Snapshot] = field(default_factory=dict)
    created: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)  # input, policy
    history: list[tuple[str, int, bytes]] = field(default_factory=list)
    changes: list[tasks_pb2.Task] = field(default_factory=list)
    waiting: parking.Parked = field(default_factory=dict)
    """Events parked before this batch for tasks it submits (see store.parking)."""
    parked: parking.Parked = field(default_factory=dict)
    """Events this batch parks, by task id; written unless the batch also submits it."""
    unparked: list[tuple[int, int]] = field(default_factory=list)
    """Keys (sequence, position) of events parked before this batch that it applied."""
    refused: list[tuple[int, str, Problem]] = field(default_factory=list)
    """Events impossible for their task (store.screen): sequence, task id, problem."""


def apply_one(
    batch: Batch, sequence: int, message: events_pb2.TaskEvent, position: int = 0
) -> None:
    """Applies the event at ``sequence`` (``position``: its place among the admitted events
    of its message, 0 for a lone one), or parks it until its task's ``submitted``."""
    events = convert.events_from_proto(message)
    if not events:
        logger.warning("event %d for task %s has no kind; ignored", sequence, message.task_id)
        return
    first = events[0]
    task_id = first.created.id if first.created is not None else first.task_id
    known = task_id in batch.current or task_id in batch.loaded
    if not known and first.kind is not Kind.SUBMITTED:
        # Before its task's `submitted` (two streams, no order): kept until it comes.
        batch.parked.setdefault(task_id, []).append((sequence, position, message))
        logger.debug("%s event %d parked until task %s", first.kind.value, sequence, task_id)
        return
    for event in events:
        _apply_event(batch, sequence, message, event)
    if not known and task_id in batch.current:  # just created: its parked events follow
        _apply_parked(batch, task_id)


def _apply_parked(batch: Batch, task_id: str) -> None:
    """Applies the events parked for a task just created, in stream order: those parked
    before this batch (deleted with it) and those this batch parked (never written)."""
    waiting = batch.waiting.pop(task_id, [])
    batch.unparked.extend((sequence, position) for sequence, position, _ in waiting)
    # Both lists are in stream order, and every event parked before this batch precedes
    # those parked by it.
    for sequence, position, message in waiting + batch.parked.pop(task_id, []):
        apply_one(batch, sequence, message, position)


def _apply_event(batch: Batch, sequence: int, message: events_pb2.TaskEvent, event: Event) -> None:
    current = batch.current.get(event.task_id) or batch.loaded.get(event.task_id)
    if current is not None and (problem := problem_against(current, event, message.type)):
        batch.refused.append((sequence, event.task_id, problem))
        return
    changed = transition(current, event)
    if changed is None:
        logger.debug("%s event %d for task %s ignored", event.kind.value, sequence, event.task_id)
        return
    if current is None:
        submitted = message.submitted
        batch.created[changed.id] = (
            submitted.input.SerializeToString(),
            submitted.retry_policy.SerializeToString(),
        )
    batch.current[changed.id] = changed
    task, data = batch.builder.task(changed)
    batch.history.append((changed.id, changed.version, data))
    batch.changes.append(task)


async def write(
    conn: AsyncConnection,
    sqlite: InlineSqlite | None,
    batch: Batch,
    applied: int,
    applied_time_us: int | None,
) -> None:
    """Writes the batch with one driver-level ``executemany`` per statement.

    The values are converted here, once, to what the driver takes (times as SQLite text or
    aware datetimes, labels as JSON text), and handed over as tuples: SQLAlchemy's per-row
    parameter processing of Core ``executemany`` was the largest cost of a batch.
    """
    to_time = sqlite_text if conn.dialect.name == "sqlite" else aware
    inserts: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    label_rows: list[tuple[str, str, str, Any]] = []
    created = batch.created
    for task_id, snapshot in batch.current.items():
        if task_id in created:
            task_input, policy = created[task_id]
            row = insert_row(snapshot, task_input, policy, to_time)
            inserts.append(row)
            if snapshot.labels:
                # The task's create time as its row holds it: the trigger of migration
                # 0002 would otherwise look it up and update each label row it inserted.
                create_time = row[_CREATE_TIME]
                label_rows.extend((task_id, k, v, create_time) for k, v in snapshot.labels.items())
        else:
            updates.append(update_row(snapshot, to_time))
    # Rows first: labels and history refer to them by foreign key.
    if inserts:
        await executemany(conn, sqlite, "insert", inserts)
    if updates:
        await executemany(conn, sqlite, "update", updates)
    if label_rows:
        await executemany(conn, sqlite, "labels", label_rows)
    if batch.history:
        await executemany(conn, sqlite, "history", batch.history)
    if batch.parked:
        park_time = to_time(dt.datetime.now(dt.UTC))
        parked = [
            (sequence, position, task_id, message.SerializeToString(), park_time)
            for task_id, messages in batch.parked.items()
            for sequence, position, message in messages
        ]
        await executemany(conn, sqlite, "park", parked)
    if batch.unparked:
        await executemany(conn, sqlite, "unpark", batch.unparked)
    await executemany(conn, sqlite, "cursor", [(applied, applied_time_us, CURSOR_ID)])
