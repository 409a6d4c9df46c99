"""The repository on real databases: each test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import insert, inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine

from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.tasks import timestamp
from store.bulk import load as _load
from store.db import inline_writes, migrate
from store.models import tasks
from store.repository import TaskRepository
from store.rows import snapshot_from_row
from tests.support.factories import T0, Stream, at, error, submitted, text_result, worker_event

PENDING, RUNNING = tasks_pb2.TASK_STATE_PENDING, tasks_pb2.TASK_STATE_RUNNING
RETRYING, COMPLETED = tasks_pb2.TASK_STATE_RETRYING, tasks_pb2.TASK_STATE_COMPLETED
FAILED, CANCELLED = tasks_pb2.TASK_STATE_FAILED, tasks_pb2.TASK_STATE_CANCELLED


async def test_migrations_create_the_schema_and_can_run_again(engine: AsyncEngine) -> None:
    await migrate(engine)  # a restarted store migrates again: nothing to do, no error
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    assert {"tasks", "task_labels", "task_history", "store_cursor", "alembic_version"} <= tables
    assert await TaskRepository(engine).applied_sequence() == 0


def life_of_a_task(task_id: str) -> list[events_pb2.TaskEvent]:
    """Submitted, a first attempt that fails and is retried, a second that completes."""
    return [
        submitted(task_id, labels={"team": "search"}),
        worker_event(task_id, at(1), 1, started=events_pb2.Started()),
        worker_event(
            task_id,
            at(2),
            1,
            progressed=events_pb2.Progressed(
                progress=tasks_pb2.TaskProgress(current=1, total=4, message="chunk 1")
            ),
        ),
        worker_event(
            task_id,
            at(3),
            1,
            retrying=events_pb2.Retrying(
                error=error(1, "flaky", at(3)), next_attempt_time=timestamp(at(5))
            ),
        ),
        worker_event(task_id, at(5), 2, "worker-2", started=events_pb2.Started()),
        worker_event(
            task_id,
            at(6),
            2,
            "worker-2",
            completed=events_pb2.Completed(result=text_result(words=2)),
        ),
    ]


async def test_a_task_life_is_recorded(repository: TaskRepository) -> None:
    task_id = "01jn0000000000000000000001"
    changes = await repository.apply(Stream().number(*life_of_a_task(task_id)))

    assert [(t.state, t.version, t.attempt) for t in changes] == [
        (PENDING, 1, 0), (RUNNING, 2, 1), (RUNNING, 3, 1), (RETRYING, 4, 1), (RUNNING, 5, 2),
        (COMPLETED, 6, 2),
    ]  # fmt: skip
    task = await repository.get(task_id)
    assert task == changes[-1]
    assert task.result == text_result(words=2)
    assert [e.message for e in task.attempt_errors] == ["flaky"]
    assert not task.HasField("error")
    assert task.worker_id == "worker-2"
    assert dict(task.labels) == {"team": "search"}
    assert task.idempotency_key == f"key-{task_id}"
    assert task.timeout.seconds == 30
    assert task.create_time.ToDatetime(tzinfo=T0.tzinfo) == T0  # microseconds survive
    assert task.start_time == timestamp(at(5))
    assert task.end_time == timestamp(at(6))
    assert task.update_time == timestamp(at(6))
    assert not task.HasField("progress")  # the second attempt reported none
    assert await repository.applied_sequence() == 6


async def test_a_redelivered_batch_changes_nothing(repository: TaskRepository) -> None:
    task_id = "01jn0000000000000000000002"
    events = life_of_a_task(task_id)
    stream = Stream()
    first = stream.number(*events[:4])
    second = stream.number(*events[4:])
    await repository.apply(first)
    before = await repository.get(task_id)

    assert await repository.apply(first) == []  # the whole batch again
    assert await repository.get(task_id) == before
    assert await repository.applied_sequence() == 4

    # A redelivery overlapping new events applies only the new ones, once.
    changes = await repository.apply(first[2:] + second)
    assert [t.version for t in changes] == [5, 6]
    assert [t.version for t in await repository.history(task_id, 0)] == [1, 2, 3, 4, 5, 6]
    assert await repository.apply(second) == []
    assert await repository.applied_sequence() == 6


async def test_an_outcome_carrying_its_start_records_the_start_first(
    repository: TaskRepository,
) -> None:
    quick, slow = "01jn00000000000000000000s1", "01jn00000000000000000000s2"
    stream = Stream()
    changes = await repository.apply(
        stream.number(
            submitted(quick),
            submitted(slow),
            # A short attempt: no `started` event, the outcome carries the start.
            worker_event(
                quick,
                at(2),
                1,
                start_time=timestamp(at(1)),
                completed=events_pb2.Completed(result=text_result(words=3)),
            ),
            # A retry of a short attempt, then a long one whose start was published.
            worker_event(
                slow,
                at(2),
                1,
                start_time=timestamp(at(1)),
                retrying=events_pb2.Retrying(
                    error=error(1, "flaky", at(2)), next_attempt_time=timestamp(at(3))
                ),
            ),
            worker_event(slow, at(3), 2, started=events_pb2.Started()),
            # A start that was published and also carried (its publish looked failed).
            worker_event(
                slow,
                at(4),
                2,
                start_time=timestamp(at(3)),
                failed=events_pb2.Failed(error=error(2, "broken", at(4))),
            ),
        )
    )

    seen = [(t.id, t.state, t.version, t.attempt) for t in changes]
    assert seen == [
        (quick, PENDING, 1, 0), (slow, PENDING, 1, 0),
        (quick, RUNNING, 2, 1), (quick, COMPLETED, 3, 1),
        (slow, RUNNING, 2, 1), (slow, RETRYING, 3, 1),
        (slow, RUNNING, 4, 2), (slow, FAILED, 5, 2),
    ]  # fmt: skip
    running = [t for t in await repository.history(quick, 0) if t.state == RUNNING]
    assert [(t.version, t.update_time, t.worker_id) for t in running] == [
        (2, timestamp(at(1)), "worker-1")
    ]
    task = await repository.get(quick)
    assert task is not None
    assert (task.start_time, task.end_time) == (timestamp(at(1)), timestamp(at(2)))
    assert task.result == text_result(words=3)
    failed = await repository.get(slow)
    assert failed is not None and failed.start_time == timestamp(at(3))


async def test_events_apply_in_stream_order_across_batches(repository: TaskRepository) -> None:
    stream = Stream()
    task_id = "01jn0000000000000000000003"
    events = life_of_a_task(task_id)
    for event in events:
        await repository.apply(stream.number(event))
    task = await repository.get(task_id)
    assert task is not None
    assert (task.state, task.version) == (COMPLETED, 6)


async def test_ignored_events_still_advance_the_cursor(repository: TaskRepository) -> None:
    stream = Stream()
    unknown = worker_event("01jn00000000000000000000zz", at(1), 1, started=events_pb2.Started())
    task_id = "01jn0000000000000000000004"
    batch = stream.number(
        unknown,
        submitted(task_id),
        submitted(task_id),  # duplicate submit
        worker_event(task_id, at(1), 1, completed=events_pb2.Completed()),
        worker_event(task_id, at(2), 2, failed=events_pb2.Failed(error=error(2, "x", at(2)))),
        events_pb2.TaskEvent(task_id=task_id),  # no kind at all
    )
    changes = await repository.apply(batch)
    assert [t.state for t in changes] == [PENDING, COMPLETED]
    assert await repository.get("01jn00000000000000000000zz") is None
    assert await repository.applied_sequence() == 6


async def test_history_after_a_version(repository: TaskRepository) -> None:
    task_id = "01jn0000000000000000000005"
    await repository.apply(Stream().number(*life_of_a_task(task_id)))
    later = await repository.history(task_id, after_version=4)
    assert [(t.version, t.state) for t in later] == [(5, RUNNING), (6, COMPLETED)]
    assert later[-1] == await repository.get(task_id)
    assert await repository.history(task_id, after_version=6) == []
    assert await repository.history("01jn00000000000000000000zz", 0) == []


async def test_get_can_leave_out_image_bytes(repository: TaskRepository) -> None:
    task_id = "01jn0000000000000000000006"
    image = b"\x89PNG" + bytes(4096)
    result = tasks_pb2.TaskResult(
        image_processing=tasks_pb2.ImageProcessingResult(image=image, width=64, height=64)
    )
    await repository.apply(
        Stream().number(
            submitted(task_id, task_type="image_processing", image=image),
            worker_event(
                task_id, at(1), 1, task_type="image_processing", started=events_pb2.Started()
            ),
            worker_event(
                task_id,
                at(2),
                1,
                task_type="image_processing",
                completed=events_pb2.Completed(result=result),
            ),
        )
    )
    full = await repository.get(task_id)
    slim = await repository.get(task_id, omit_payloads=True)
    assert full is not None and slim is not None
    assert full.result.image_processing.image == image
    assert slim.result.image_processing.image == b""
    assert slim.result.image_processing.width == 64
    assert await repository.get("01jn00000000000000000000zz") is None


async def test_a_redrive_runs_again_and_ignores_the_previous_run(
    repository: TaskRepository,
) -> None:
    task_id = "01jn0000000000000000000007"
    stream = Stream()
    await repository.apply(
        stream.number(
            submitted(task_id, max_attempts=1),
            worker_event(task_id, at(1), 1, started=events_pb2.Started()),
            worker_event(task_id, at(2), 1, failed=events_pb2.Failed(error=error(1, "no", at(2)))),
        )
    )
    found = await repository.get_for_redrive(task_id)
    assert found is not None
    task, task_input, retry_policy, per_run = found
    assert (task.state, task.attempt, per_run) == (FAILED, 1, 1)
    assert task_input.text_processing.text == "Hello, world."
    assert retry_policy.multiplier == 2.0

    changes = await repository.apply(
        stream.number(
            events_pb2.TaskEvent(
                task_id=task_id,
                type="text_processing",
                time=timestamp(at(3)),
                redriven=events_pb2.Redriven(attempt_offset=task.attempt, max_attempts=per_run),
            ),
            # A late event of the first run is not counted against the second.
            worker_event(task_id, at(4), 1, completed=events_pb2.Completed()),
            worker_event(task_id, at(5), 2, started=events_pb2.Started()),
        )
    )
    assert [(t.state, t.attempt, t.max_attempts) for t in changes] == [
        (PENDING, 1, 2),
        (RUNNING, 2, 2),
    ]
    assert not changes[0].HasField("error") and not changes[0].HasField("end_time")
    assert [e.message for e in changes[-1].attempt_errors] == ["no"]
    assert await repository.get_for_redrive("01jn00000000000000000000zz") is None


async def test_extreme_values_do_not_fail_the_batch(repository: TaskRepository) -> None:
    # A batch the database rejected would be redelivered forever and stall the store.
    task_id = "01jn0000000000000000000008"
    huge = tasks_pb2.TaskProgress(current=2**64 - 1, total=2**64 - 1, message="é" * 10_000)
    changes = await repository.apply(
        Stream().number(
            submitted(task_id),
            worker_event(task_id, at(1), 1, "w" * 1000, started=events_pb2.Started()),
            worker_event(
                task_id, at(2), 1, "w" * 1000, progressed=events_pb2.Progressed(progress=huge)
            ),
        )
    )
    assert len(changes) == 3
    task = await repository.get(task_id)
    assert task is not None
    assert (task.progress.current, task.worker_id) == (2**63 - 1, "w" * 1000)
    assert task.progress.message == "é" * 10_000


async def test_written_rows_read_back_as_sqlalchemy_writes_them(
    repository: TaskRepository, engine: AsyncEngine
) -> None:
    """apply hands the driver pre-converted values: they must be stored exactly as a Core
    insert through the column types would store them (SQLite compares times as text)."""
    task_id = "01jn0000000000000000000010"
    whole = T0.replace(microsecond=0)  # no microseconds: the text must still carry .000000
    events = [
        submitted(task_id, created=whole, labels={"team": "x", "n": "1"}),
        worker_event(task_id, whole + dt.timedelta(seconds=1), 1, started=events_pb2.Started()),
    ]
    await repository.apply(Stream().number(*events))
    twin = "01jn0000000000000000000011"
    async with engine.begin() as conn:
        row = (await conn.execute(select(tasks).where(tasks.c.id == task_id))).one()._asdict()
        await conn.execute(insert(tasks), [{**row, "id": twin}])
        columns = ", ".join(c.name for c in tasks.c if c.name != "id")
        raw = (
            await conn.exec_driver_sql(
                f"SELECT {columns} FROM tasks WHERE id IN ('{task_id}', '{twin}') ORDER BY id"
            )
        ).all()
        labels = (
            await conn.exec_driver_sql(
                f"SELECT key, value FROM task_labels WHERE task_id = '{task_id}' ORDER BY key"
            )
        ).all()
    assert raw[0] == raw[1]
    assert row["start_time"] == whole + dt.timedelta(seconds=1)
    assert row["labels"] == {"team": "x", "n": "1"}
    assert [tuple(r) for r in labels] == [("n", "1"), ("team", "x")]


async def test_loaded_snapshots_equal_what_sqlalchemy_reads(
    repository: TaskRepository, engine: AsyncEngine
) -> None:
    """apply loads the batch's tasks straight from the driver on SQLite: the snapshots must
    be those SQLAlchemy's column types give (aware UTC times, labels, booleans)."""
    ids = ["01jn0000000000000000000020", "01jn0000000000000000000021"]
    stream = Stream()
    await repository.apply(stream.number(*life_of_a_task(ids[0])[:4], submitted(ids[1])))
    inline = inline_writes(engine)
    if inline is None:  # PostgreSQL: the load goes through SQLAlchemy too
        async with engine.begin() as conn:
            loaded = await _load(conn, None, set(ids))
    else:
        async with inline.transaction(engine) as (conn, sqlite):
            loaded = await _load(conn, sqlite, set(ids))
    async with engine.connect() as conn:
        rows = (await conn.execute(select(tasks).where(tasks.c.id.in_(ids)))).all()
    expected = {row.id: snapshot_from_row(row._mapping) for row in rows}
    assert loaded == expected
    assert loaded[ids[0]].labels == {"team": "search"}
    assert loaded[ids[0]].next_attempt_time == at(5)


async def test_every_event_of_a_message_is_applied_in_order_at_its_sequence(
    repository: TaskRepository,
) -> None:
    """A message holding a batch: all its events share its sequence, and a redelivery of
    it (alone, or with later messages) applies none of them again."""
    first, second = "01jn00000000000000000000b1", "01jn00000000000000000000b2"
    stream = Stream()
    submits = stream.batch(submitted(first), submitted(second))
    outcomes = stream.batch(
        worker_event(first, at(1), 1, started=events_pb2.Started()),
        worker_event(second, at(1), 1, started=events_pb2.Started()),
        worker_event(first, at(2), 1, completed=events_pb2.Completed(result=text_result(2))),
        worker_event(second, at(2), 1, failed=events_pb2.Failed(error=error(1, "no", at(2)))),
    )
    assert [s for s, _ in submits] == [1, 1] and {s for s, _ in outcomes} == {2}
    changes = await repository.apply(submits)
    assert [(t.id, t.version) for t in changes] == [(first, 1), (second, 1)]
    assert await repository.applied_sequence() == 1

    assert await repository.apply(submits) == []  # redelivered
    changes = await repository.apply(submits + outcomes)  # again, with the next message
    assert [(t.id, t.state, t.version) for t in changes] == [
        (first, RUNNING, 2), (second, RUNNING, 2), (first, COMPLETED, 3), (second, FAILED, 3),
    ]  # fmt: skip
    assert await repository.apply(outcomes) == []
    assert await repository.applied_sequence() == 2
    for task_id, last in ((first, COMPLETED), (second, FAILED)):
        history = await repository.history(task_id, 0)
        assert [(t.state, t.version) for t in history] == [(PENDING, 1), (RUNNING, 2), (last, 3)]


async def test_the_events_of_one_sequence_keep_their_order_among_others(
    repository: TaskRepository,
) -> None:
    """Entries arrive out of sequence order (a gap filled around delivered ones): they are
    sorted by sequence, and those of one message stay in their order."""
    task_id = "01jn00000000000000000000b3"
    stream = Stream()
    submit = stream.number(submitted(task_id))
    run = stream.batch(
        worker_event(task_id, at(1), 1, started=events_pb2.Started()),
        worker_event(task_id, at(2), 1, completed=events_pb2.Completed(result=text_result(4))),
    )
    changes = await repository.apply(run + submit)
    assert [(t.state, t.version) for t in changes] == [(PENDING, 1), (RUNNING, 2), (COMPLETED, 3)]
    assert await repository.applied_sequence() == 2
