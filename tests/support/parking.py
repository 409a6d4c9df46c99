"""Events that overtake their task's ``submitted``, and the rows they leave parked."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from conveyor.api.events.v1 import events_pb2
from conveyor.tasks import timestamp
from store.models import parked_events
from tests.support.factories import at, text_result, worker_event


def completion(task_id: str) -> events_pb2.TaskEvent:
    """A short attempt's outcome, carrying its start."""
    return worker_event(
        task_id,
        at(2),
        1,
        start_time=timestamp(at(1)),
        completed=events_pb2.Completed(result=text_result(words=5)),
    )


async def parked_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(parked_events))).scalar_one()
        )
