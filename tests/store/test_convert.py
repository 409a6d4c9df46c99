"""Conversions between events, snapshots, rows and Task messages."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from conveyor import payloads
from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.tasks import from_timestamp, timestamp
from store import convert, rows
from store.transitions import Kind, State, transition
from tests.support.factories import T0, at, error, submitted, text_result, worker_event


def test_a_submitted_event_becomes_the_first_snapshot() -> None:
    message = submitted("01jn0000000000000000000001", labels={"a": "b"}, scheduled=True)
    event = convert.event_from_proto(message)
    assert event is not None and event.created is not None
    assert (event.kind, event.time) == (Kind.SUBMITTED, T0)
    created = event.created
    assert (created.state, created.max_attempts, created.timeout_seconds) == (
        State.SCHEDULED,
        3,
        30,
    )
    assert created.run_at == T0 + dt.timedelta(hours=1)
    task = convert.snapshot_to_task(created)
    assert task.labels == message.submitted.task.labels
    assert task.run_at == message.submitted.task.run_at
    assert task.create_time == message.submitted.task.create_time


def test_times_convert_exactly() -> None:
    for value in (T0, dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC), at(0.5)):
        message = events_pb2.TaskEvent(time=timestamp(value), cancelled=events_pb2.Cancelled())
        event = convert.event_from_proto(message)
        assert event is not None
        assert event.time == value == from_timestamp(message.time)


def test_a_snapshot_survives_the_row_round_trip() -> None:
    event = convert.event_from_proto(submitted("01jn0000000000000000000001", labels={"k": "v"}))
    assert event is not None and event.created is not None
    errors = (
        error(1, "one", at(1)).SerializeToString(),
        error(2, "two", at(2)).SerializeToString(),
    )
    snapshot = replace(event.created, attempt_errors=errors, error=errors[-1], attempt=2)
    row = rows.snapshot_to_row(snapshot)
    assert rows.snapshot_from_row(row) == snapshot
    task = convert.snapshot_to_task(snapshot)
    assert [e.message for e in task.attempt_errors] == ["one", "two"]
    assert task.error.message == "two"


def test_errors_encode_as_the_repeated_field() -> None:
    errors = tuple(error(i, f"e{i}", at(i)).SerializeToString() for i in (1, 2, 3))
    blob = rows.encode_errors(errors)
    assert tasks_pb2.Task.FromString(blob).attempt_errors[2].message == "e3"
    assert rows.decode_errors(blob) == errors
    assert rows.encode_errors(()) == b"" and rows.decode_errors(b"") == ()


def test_an_event_without_a_kind_converts_to_nothing() -> None:
    assert convert.event_from_proto(events_pb2.TaskEvent(task_id="x")) is None


def test_omit_payloads_clears_only_image_bytes() -> None:
    task = tasks_pb2.Task(
        result=tasks_pb2.TaskResult(
            image_processing=tasks_pb2.ImageProcessingResult(image=b"png", width=3)
        )
    )
    whole = task.result.SerializeToString()
    convert.omit_payloads(task)
    assert (task.result.image_processing.image, task.result.image_processing.width) == (b"", 3)
    assert task.result.payload == payloads.describe(whole)  # where to read it all
    text = tasks_pb2.Task(
        result=tasks_pb2.TaskResult(text_processing=tasks_pb2.TextProcessingResult(words=4))
    )
    assert convert.omit_payloads(text).result.text_processing.words == 4


def test_an_outcome_carrying_its_start_reads_as_the_start_then_the_outcome() -> None:
    start = timestamp(at(1))
    outcome = worker_event("t1", at(2), 3, start_time=start, completed=events_pb2.Completed())
    first, second = convert.events_from_proto(outcome)
    assert (first.kind, first.time, first.attempt, first.worker_id) == (
        Kind.STARTED,
        at(1),
        3,
        "worker-1",
    )
    assert (second.kind, second.time) == (Kind.COMPLETED, at(2))
    progress = worker_event("t1", at(2), 3, start_time=start, progressed=events_pb2.Progressed())
    assert [e.kind for e in convert.events_from_proto(progress)] == [Kind.PROGRESSED]
    failed = worker_event("t1", at(2), 3, failed=events_pb2.Failed())
    assert [e.kind for e in convert.events_from_proto(failed)] == [Kind.FAILED]
    assert convert.events_from_proto(events_pb2.TaskEvent(task_id="t1")) == ()


def test_the_builder_gives_each_version_as_snapshot_to_task_and_its_bytes() -> None:
    """The builder's Task and history bytes (the fixed part's bytes then the changing
    part's) hold every field of each version: labels, timeout and run_at fixed at submit,
    then progress, errors, a result and each time as the task runs."""
    task_id = "01jn0000000000000000000042"
    message = submitted(task_id, labels={"team": "a", "env": "prod"}, scheduled=True)
    progress = tasks_pb2.TaskProgress(current=1, total=2, message="half")
    retry = events_pb2.Retrying(error=error(1, "boom", at(3)), next_attempt_time=timestamp(at(4)))
    life = [
        message,
        worker_event(task_id, at(1), 1, started=events_pb2.Started()),
        worker_event(task_id, at(2), 1, progressed=events_pb2.Progressed(progress=progress)),
        worker_event(task_id, at(3), 1, retrying=retry),
        worker_event(task_id, at(5), 2, started=events_pb2.Started()),
        worker_event(
            task_id, at(6), 2, completed=events_pb2.Completed(result=text_result(words=7))
        ),
    ]
    builder = convert.TaskBuilder()
    snapshot = None
    for proto in life:
        event = convert.event_from_proto(proto)
        assert event is not None
        snapshot = transition(snapshot, event)
        assert snapshot is not None
        task, data = builder.task(snapshot)
        expected = convert.snapshot_to_task(snapshot)
        assert task == expected
        assert tasks_pb2.Task.FromString(data) == expected
    assert snapshot is not None and snapshot.state is State.COMPLETED
    assert task.labels == {"team": "a", "env": "prod"} and task.HasField("run_at")
    assert [e.message for e in task.attempt_errors] == ["boom"]
