"""The store's screen of events: each rule refuses what its publisher cannot send, and
lets through everything the services do send."""

from __future__ import annotations

import pytest

from conveyor import messages, subjects
from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.config import Limits
from conveyor.tasks import duration
from conveyor.tracebacks import MAX_ERROR_CHARS, MAX_TRACEBACK_BYTES
from store import convert
from store.screen import MAX_BATCH_EVENTS, EventScreen, Refusals, problem_against, problem_of
from store.transitions import Snapshot
from tests.support.factories import T0, at, submitted, text_result, worker_event

TASK = "01jn0000000000000000000001"
GATEWAY = subjects.event_subject(subjects.GATEWAY, "text_processing")
WORKER = subjects.event_subject(subjects.WORKER, "text_processing")


def reason(subject: str, event: events_pb2.TaskEvent, limits: Limits | None = None) -> str | None:
    problem = problem_of(subject, event, event.ByteSize(), limits or Limits())
    return None if problem is None else problem[0]


def test_what_the_services_publish_passes() -> None:
    task = S.Task(id=TASK, type="text_processing", attempt=1, version=4)
    assert reason(GATEWAY, submitted(TASK)) is None
    assert (
        reason(subjects.event_subject(subjects.SCHEDULER, "text_processing"), submitted(TASK))
        is None
    )
    started = worker_event(TASK, at(1), 1, started=events_pb2.Started())
    assert reason(WORKER, started) is None
    done = worker_event(TASK, at(2), 1, completed=events_pb2.Completed(result=text_result(3)))
    assert reason(WORKER, done) is None
    for subject, _, _ in (
        messages.cancel_requested(task),
        messages.redriven(task, 3),
        messages.lost(task, "gone"),
    ):
        publisher, _ = subjects.event_origin(subject)
        assert publisher in (subjects.STORE, subjects.SCHEDULER)
    for message in (
        messages.cancel_requested(task),
        messages.redriven(task, 3),
        messages.lost(task, "gone"),
    ):
        subject, data, _ = message
        assert reason(subject, events_pb2.TaskEvent.FromString(data)) is None


@pytest.mark.parametrize(
    ("publisher", "kind"),
    [
        (subjects.WORKER, "submitted"),
        (subjects.GATEWAY, "completed"),
        (subjects.GATEWAY, "cancel_requested"),
        (subjects.SCHEDULER, "redriven"),
        (subjects.STORE, "started"),
    ],
)
def test_a_kind_from_the_wrong_publisher_is_refused(publisher: str, kind: str) -> None:
    event = submitted(TASK) if kind == "submitted" else worker_event(TASK, at(1), 1)
    if kind != "submitted":
        getattr(event, kind).SetInParent()
    assert reason(subjects.event_subject(publisher, "text_processing"), event) == "publisher"


def test_the_scheduler_fails_only_lost_tasks() -> None:
    subject = subjects.event_subject(subjects.SCHEDULER, "text_processing")
    failed = worker_event(TASK, at(1), 1, worker=messages.SCHEDULER_ID, failed=events_pb2.Failed())
    assert reason(subject, failed) == "publisher"
    failed.failed.error.type = messages.LOST_ERROR
    assert reason(subject, failed) is None


def test_ids_types_and_subjects_must_be_ones_the_services_make() -> None:
    assert reason(GATEWAY, submitted("../../etc/passwd")) == "task_id"
    assert reason(GATEWAY, submitted(TASK, task_type="image_processing")) == "type"
    assert reason("conveyor.events.nobody.text_processing", submitted(TASK)) == "subject"
    inner = submitted(TASK)
    inner.submitted.task.id = "01jn0000000000000000000002"
    assert reason(GATEWAY, inner) == "type"


def test_a_submitted_task_is_held_to_the_gateways_rules() -> None:
    assert reason(GATEWAY, submitted(TASK, labels={f"k{i}": "v" for i in range(33)})) == "labels"
    assert reason(GATEWAY, submitted(TASK, labels={"bad key!": "v"})) == "labels"
    assert reason(GATEWAY, submitted(TASK, max_attempts=101)) == "options"
    assert reason(GATEWAY, submitted(TASK, max_attempts=0)) == "options"
    long_timeout = submitted(TASK)
    long_timeout.submitted.task.timeout.CopyFrom(duration(48 * 3600))
    assert reason(GATEWAY, long_timeout) == "options"
    empty = submitted(TASK)
    empty.submitted.input.text_processing.text = ""
    assert reason(GATEWAY, empty) == "input"
    big = submitted(TASK)
    big.submitted.input.text_processing.text = "x" * 2048
    assert reason(GATEWAY, big, Limits(max_text_bytes=1024)) == "input"
    abridged = submitted(TASK)  # its text is in the object store: checked at submit
    abridged.submitted.input.text_processing.text = ""
    abridged.submitted.input.payload.name = f"{TASK}/input"
    assert reason(GATEWAY, abridged) is None


def test_a_submitted_task_names_a_namespace_the_gateway_accepts() -> None:
    named = submitted(TASK)
    named.submitted.task.namespace = "team-a"
    assert reason(GATEWAY, named) is None
    for bad in ("../../etc", "Team", "x" * 64, "*"):
        named.submitted.task.namespace = bad
        assert reason(GATEWAY, named) == "namespace", bad


def test_worker_events_need_an_attempt_a_worker_and_an_inline_sized_result() -> None:
    assert reason(WORKER, worker_event(TASK, at(1), 0, started=events_pb2.Started())) == "attempt"
    assert (
        reason(WORKER, worker_event(TASK, at(1), 1, worker="", started=events_pb2.Started()))
        == "worker"
    )
    huge = S.TaskResult()
    huge.custom.json = '{"x":"' + "y" * (2 * 1024 * 1024) + '"}'
    done = worker_event(TASK, at(2), 1, completed=events_pb2.Completed(result=huge))
    assert reason(WORKER, done) == "size"


def test_a_failed_attempts_error_past_what_a_worker_sends_is_refused() -> None:
    def failure(
        kind: str, traceback: str = "", message: str = "bad", type: str = "E"
    ) -> str | None:
        error = S.TaskError(attempt=1, type=type, message=message, traceback=traceback)
        body: object = events_pb2.Retrying(error=error)
        if kind == "failed":
            body = events_pb2.Failed(error=error)
        event = worker_event(TASK, at(2), 1, "worker-1", "text_processing", **{kind: body})
        return reason(WORKER, event)

    for kind in ("failed", "retrying"):
        assert failure(kind, traceback="t" * MAX_TRACEBACK_BYTES) is None
        assert failure(kind, traceback="t" * (MAX_TRACEBACK_BYTES + 1)) == "size"
        # Bytes, not characters: 6000 three-byte characters are 18000 bytes.
        assert failure(kind, traceback="\u2603" * 6000) == "size"
        assert failure(kind, message="m" * (MAX_ERROR_CHARS + 1)) == "size"
        assert failure(kind, type="T" * (MAX_ERROR_CHARS + 1)) == "size"


def test_an_event_past_the_message_limit_is_refused() -> None:
    event = submitted(TASK)
    assert problem_of(GATEWAY, event, 17 * 1024 * 1024, Limits()) is not None


def test_against_its_task_an_event_must_match_its_type_and_budget() -> None:
    created = convert.events_from_proto(submitted(TASK, max_attempts=2))[0].created
    assert isinstance(created, Snapshot)
    started = convert.events_from_proto(worker_event(TASK, at(1), 3, started=events_pb2.Started()))[
        0
    ]
    problem = problem_against(created, started, "text_processing")
    assert problem is not None and problem[0] == "attempt"
    within = convert.events_from_proto(worker_event(TASK, at(1), 2, started=events_pb2.Started()))[
        0
    ]
    assert problem_against(created, within, "text_processing") is None
    problem = problem_against(created, within, "image_processing")
    assert problem is not None and problem[0] == "type"
    # A delivery past the budget is failed by its worker: possible, not refused.
    failed = convert.events_from_proto(worker_event(TASK, at(1), 3, failed=events_pb2.Failed()))[0]
    assert problem_against(created, failed, "text_processing") is None


def test_events_on_the_subjects_before_publishers_were_named_are_applied() -> None:
    """At the upgrade, EVENTS may hold events on ``conveyor.events.<type>``: they are
    checked like any other, but not against a publisher (none is named)."""
    legacy = f"{subjects.EVENTS_PREFIX}.text_processing"
    assert subjects.event_origin(legacy) == (subjects.LEGACY_PUBLISHER, "text_processing")
    assert reason(legacy, submitted(TASK)) is None
    assert reason(legacy, worker_event(TASK, at(1), 1, started=events_pb2.Started())) is None
    assert reason(legacy, submitted("../../etc/passwd")) == "task_id"


def test_each_kind_of_refusal_is_logged_once_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    counted: list[str] = []
    screen = EventScreen(Limits(), Refusals(counted.append))
    forged = submitted("../../etc/passwd").SerializeToString()
    with caplog.at_level("WARNING", logger="store.screen"):
        for sequence in range(3):
            assert screen.admit(sequence, GATEWAY, forged, None) == []
        assert screen.admit(9, GATEWAY, b"\xff\xff", None) == []
        admitted = screen.admit(10, GATEWAY, submitted(TASK, created=T0).SerializeToString(), {})
        assert [event.task_id for event in admitted] == [TASK]
    assert counted == ["task_id", "task_id", "task_id", "malformed"]
    assert len(caplog.records) == 2


def test_each_event_of_a_batch_is_screened_alone() -> None:
    counted: list[str] = []
    screen = EventScreen(Limits(), Refusals(counted.append))
    other = "01jn0000000000000000000002"
    started = worker_event(TASK, at(1), 1, started=events_pb2.Started())
    forged = submitted(other)  # a worker may not create a task
    done = worker_event(other, at(2), 1, completed=events_pb2.Completed(result=text_result(3)))
    subject, data, headers = messages.event_batch(
        subjects.WORKER, "text_processing", "w:1", [started, forged, done]
    )
    assert subject == WORKER
    assert screen.admit(5, subject, data, headers) == [started, done]
    assert counted == ["publisher"]


@pytest.mark.parametrize(
    ("count", "data", "reason_"),
    [
        ("3", events_pb2.TaskEvents(events=[submitted(TASK)] * 2).SerializeToString(), "malformed"),
        ("two", b"", "malformed"),
        ("\u00b2", b"", "malformed"),  # a digit to str.isdigit, not to int()
        ("9" * 5000, b"", "malformed"),
        ("-1", b"", "malformed"),
        ("", b"", "malformed"),
        ("1", b"\xff\xff", "malformed"),
        ("4097", b"", "size"),
    ],
)
def test_a_malformed_miscounted_or_oversized_batch_is_refused_whole(
    count: str, data: bytes, reason_: str
) -> None:
    counted: list[str] = []
    screen = EventScreen(Limits(), Refusals(counted.append))
    headers = {subjects.HEADER_MSG_ID: "x", subjects.HEADER_EVENT_COUNT: count}
    assert screen.admit(1, GATEWAY, data, headers) == []
    assert counted == [reason_]


def test_a_batch_at_the_cap_is_admitted() -> None:
    events = [submitted() for _ in range(MAX_BATCH_EVENTS)]
    _, data, headers = messages.event_batch(subjects.GATEWAY, "text_processing", "g", events)
    assert len(EventScreen().admit(1, GATEWAY, data, headers)) == MAX_BATCH_EVENTS


def test_a_batch_event_over_the_message_limit_is_refused_alone() -> None:
    counted: list[str] = []
    screen = EventScreen(Limits(max_message_bytes=2000), Refusals(counted.append))
    small = worker_event(TASK, at(1), 1, started=events_pb2.Started())
    big = worker_event(
        TASK, at(2), 1, failed=events_pb2.Failed(error=S.TaskError(message="x" * 3000))
    )
    _, data, headers = messages.event_batch(subjects.WORKER, "text_processing", "w", [small, big])
    assert screen.admit(1, WORKER, data, headers) == [small]
    assert counted == ["size"]
