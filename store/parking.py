"""Events that arrive before their task: kept in ``parked_events`` until it is submitted.

A submit publishes the task's ``submitted`` event (to EVENTS) and the task (to TASKS) at
the same time, so it costs one round trip instead of two. Two streams give no order
between them, so a fast worker's event of the task can reach EVENTS first, and the store,
applying EVENTS in order, would meet an event of a task it does not know. Such an event
is parked in the batch that read it (same transaction, so exactly-once still holds) and
applied right after the task's ``submitted``, whose batch deletes it.

An event whose task never comes (its submit failed half-way and was not retried with its
idempotency key; the client was told it failed) is dropped after PARKED_TTL.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor.api.events.v1 import events_pb2
from store.db import InlineSqlite
from store.models import parked_events

log = logging.getLogger(__name__)

PARKED_TTL = dt.timedelta(days=7)
"""How long an event waits for its task: as long as EVENTS keeps events."""
PRUNE_EVERY = dt.timedelta(minutes=10)
"""How often a store looks for events that waited longer than PARKED_TTL."""

Parked = dict[str, list[tuple[int, int, events_pb2.TaskEvent]]]
"""Parked events by task id: (stream sequence, position in its message, event), in stream
order."""

_CHUNK = 500
_SQLITE_SELECT = "SELECT sequence, position, task_id, event FROM parked_events WHERE task_id IN "


def submitted_ids(events: Collection[tuple[int, events_pb2.TaskEvent]]) -> set[str]:
    """The tasks a batch submits: the only ones whose parked events it may apply."""
    return {
        event.task_id or event.submitted.task.id
        for _, event in events
        if event.HasField("submitted")
    }


async def load(
    conn: AsyncConnection, sqlite: InlineSqlite | None, task_ids: Collection[str]
) -> Parked:
    """The events parked for these tasks, oldest first (nothing to read for none)."""
    parked: Parked = {}
    ordered = sorted(task_ids)
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        rows: list[tuple[Any, ...]]
        if sqlite is not None:
            sql = f"{_SQLITE_SELECT}({', '.join('?' * len(chunk))})"
            rows = [tuple(row) for row in sqlite.fetchall(sql, chunk)]
        else:
            query = select(
                parked_events.c.sequence,
                parked_events.c.position,
                parked_events.c.task_id,
                parked_events.c.event,
            ).where(parked_events.c.task_id.in_(chunk))
            rows = [tuple(row) for row in await conn.execute(query)]
        for sequence, position, task_id, data in sorted(rows):  # stream, then batch order
            event = events_pb2.TaskEvent.FromString(bytes(data))
            parked.setdefault(task_id, []).append((int(sequence), int(position), event))
    return parked


async def prune(conn: AsyncConnection, now: dt.datetime) -> int:
    """Drops events that waited for their task longer than PARKED_TTL; how many."""
    result = await conn.execute(
        delete(parked_events).where(parked_events.c.park_time < now - PARKED_TTL)
    )
    dropped = int(result.rowcount or 0)
    if dropped:
        log.warning(
            "dropped %d events whose task was never submitted within %s", dropped, PARKED_TTL
        )
    return dropped
