"""The state machine, exhaustively: every (state, event kind) pair, staleness, invariants."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.api.tasks.v1 import tasks_pb2
from store.transitions import Event, Kind, Progress, Snapshot, State, transition

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
LATER = T0 + dt.timedelta(minutes=5)
K = Kind


def snapshot(state: State = State.PENDING, **changes: object) -> Snapshot:
    """A task in ``state``; attempt 2 once it has run (RUNNING and later), else 0."""
    ran = state not in (State.PENDING, State.SCHEDULED)
    base = Snapshot(
        id="01jaaaaaaaaaaaaaaaaaaaaaaa",
        type="text_processing",
        state=state,
        create_time=T0,
        update_time=T0,
        attempt=2 if ran else 0,
        max_attempts=3,
        version=4,
        worker_id="w1" if ran else "",
        labels={"team": "a"},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def event(kind: Kind, attempt: int = 0, **fields: object) -> Event:
    """An event of ``kind`` at LATER for the task of :func:`snapshot`."""
    return Event(
        kind=kind,
        task_id="01jaaaaaaaaaaaaaaaaaaaaaaa",
        time=LATER,
        attempt=attempt,
        worker_id=str(fields.pop("worker_id", "w2")),
        **fields,  # type: ignore[arg-type]
    )


def natural_event(current: Snapshot | None, kind: Kind) -> Event:
    """The event a well-behaved system sends next: the next attempt's start, the current
    attempt's outcome, a client action with attempt 0."""
    attempt = current.attempt if current else 0
    if kind is K.SUBMITTED:
        return event(kind, created=snapshot(State.PENDING, version=1))
    if kind is K.STARTED:
        return event(kind, attempt + 1)
    if kind in (K.CANCEL_REQUESTED, K.REDRIVEN):
        return event(kind, 0, attempt_offset=attempt, run_max_attempts=3)
    return event(
        kind,
        max(attempt, 1),
        worker_id="w1",
        progress=Progress(1, 2, "half"),
        error=b"\x10\x01",
        result=b"",
    )


_: State | None = None  # ignored
P, S, R, Y = State.PENDING, State.SCHEDULED, State.RUNNING, State.RETRYING
C, F, X = State.COMPLETED, State.FAILED, State.CANCELLED
KINDS = [K.SUBMITTED, K.STARTED, K.PROGRESSED, K.RETRYING, K.COMPLETED, K.FAILED,
         K.CANCEL_REQUESTED, K.CANCELLED, K.REDRIVEN]  # fmt: skip
# The state after each kind of natural event (columns in KINDS order), or _ when ignored.
TABLE: dict[State | None, list[State | None]] = {
    #      SUB STA PRO RTY COM FAI CRQ CAN RED
    None: [P,  _,  _,  _,  _,  _,  _,  _,  _],
    P:    [_,  R,  _,  _,  C,  F,  X,  X,  _],
    S:    [_,  R,  _,  _,  C,  F,  X,  X,  _],
    R:    [_,  R,  R,  Y,  C,  F,  R,  X,  _],
    Y:    [_,  R,  _,  _,  C,  F,  X,  X,  _],
    C:    [_,  _,  _,  _,  _,  _,  _,  _,  _],
    F:    [_,  _,  _,  _,  _,  _,  _,  _,  P],
    X:    [_,  _,  _,  _,  _,  _,  _,  _,  P],
}  # fmt: skip
PAIRS = [
    pytest.param(state, kind, row[i], id=f"{state.name if state else 'NONE'}-{kind.value}")
    for state, row in TABLE.items()
    for i, kind in enumerate(KINDS)
]


def test_table_covers_every_state_and_kind() -> None:
    assert set(TABLE) == {None, *State}
    assert set(KINDS) == set(Kind)
    assert all(len(row) == len(KINDS) for row in TABLE.values())


def test_state_numbers_are_the_protos() -> None:
    for state in State:
        assert tasks_pb2.TaskState.Value(f"TASK_STATE_{state.name}") == state


@pytest.mark.parametrize(("state", "kind", "expected"), PAIRS)
def test_every_state_and_event_kind(
    state: State | None, kind: Kind, expected: State | None
) -> None:
    current = None if state is None else snapshot(state)
    after = transition(current, natural_event(current, kind))
    if expected is None:
        assert after is None
        return
    assert after is not None
    assert after.state is expected
    assert after.update_time == LATER
    assert after.version == (1 if current is None else current.version + 1)


def test_submitted_creates_version_one_from_the_event_task() -> None:
    created = snapshot(State.SCHEDULED, version=7, run_at=LATER, priority=1)
    after = transition(None, event(K.SUBMITTED, created=created))
    assert after == replace(created, version=1, update_time=LATER)


def test_started_begins_an_attempt() -> None:
    current = snapshot(State.RETRYING, progress=Progress(5, 9), next_attempt_time=LATER)
    after = transition(current, event(K.STARTED, 3, worker_id="w9"))
    assert after is not None
    assert (after.state, after.attempt, after.worker_id, after.start_time) == (R, 3, "w9", LATER)
    assert after.progress == Progress()
    assert after.next_attempt_time is None


def test_progressed_records_progress_and_keeps_the_state() -> None:
    after = transition(snapshot(R), event(K.PROGRESSED, 2, progress=Progress(3, 10, "chunk 3")))
    assert after is not None
    assert (after.state, after.progress, after.version) == (R, Progress(3, 10, "chunk 3"), 5)


def test_retrying_keeps_the_error_and_when_to_try_again() -> None:
    current = snapshot(R, attempt_errors=(b"first",))
    after = transition(current, event(K.RETRYING, 2, error=b"second", next_attempt_time=LATER))
    assert after is not None
    assert after.state is Y
    assert after.error == b"second"
    assert after.attempt_errors == (b"first", b"second")
    assert after.next_attempt_time == LATER


def test_retrying_after_a_cancel_request_cancels() -> None:
    current = snapshot(R, cancel_requested=True)
    after = transition(current, event(K.RETRYING, 2, error=b"boom", next_attempt_time=LATER))
    assert after is not None
    assert (after.state, after.end_time, after.next_attempt_time) == (X, LATER, None)
    assert after.attempt_errors == (b"boom",)


def test_completed_sets_the_result_and_clears_the_retry_error() -> None:
    current = snapshot(Y, error=b"e1", attempt_errors=(b"e1",), next_attempt_time=LATER)
    after = transition(current, event(K.COMPLETED, 2, result=b"\x0a\x00"))
    assert after is not None
    assert (after.state, after.result, after.error, after.end_time) == (C, b"\x0a\x00", None, LATER)
    assert after.attempt_errors == (b"e1",)
    assert after.next_attempt_time is None


def test_failed_keeps_the_final_error() -> None:
    after = transition(snapshot(R, attempt_errors=(b"e1",)), event(K.FAILED, 2, error=b"e2"))
    assert after is not None
    assert (after.state, after.error, after.end_time) == (F, b"e2", LATER)
    assert after.attempt_errors == (b"e1", b"e2")


def test_cancel_request_of_a_queued_task_cancels_it() -> None:
    after = transition(snapshot(P), event(K.CANCEL_REQUESTED))
    assert after is not None
    assert (after.state, after.cancel_requested, after.end_time) == (X, True, LATER)


def test_cancel_request_of_a_running_task_marks_it() -> None:
    after = transition(snapshot(R), event(K.CANCEL_REQUESTED))
    assert after is not None
    assert (after.state, after.cancel_requested, after.end_time) == (R, True, None)
    assert transition(after, event(K.CANCEL_REQUESTED)) is None  # asked again: nothing new


def test_redriven_starts_a_fresh_run_after_the_spent_attempts() -> None:
    current = snapshot(
        F, attempt=3, error=b"e3", attempt_errors=(b"e1", b"e2", b"e3"), end_time=T0,
        cancel_requested=True, result=b"r",
    )  # fmt: skip
    after = transition(current, event(K.REDRIVEN, attempt_offset=3, run_max_attempts=2))
    assert after is not None
    assert after.state is P
    assert (after.attempt_offset, after.max_attempts, after.attempt) == (3, 5, 3)
    assert (after.error, after.result, after.end_time, after.cancel_requested) == (
        None, None, None, False,
    )  # fmt: skip
    assert after.attempt_errors == (b"e1", b"e2", b"e3")


STALE = [
    pytest.param(snapshot(R), event(K.STARTED, 1), id="started-older-attempt"),
    pytest.param(snapshot(R), event(K.STARTED, 2, worker_id="w1"), id="started-duplicate"),
    pytest.param(snapshot(R), event(K.PROGRESSED, 1), id="progress-older-attempt"),
    pytest.param(snapshot(R), event(K.PROGRESSED, 3), id="progress-unstarted-attempt"),
    pytest.param(snapshot(R), event(K.RETRYING, 1, error=b"e"), id="retrying-older-attempt"),
    pytest.param(snapshot(Y), event(K.RETRYING, 2, error=b"e"), id="retrying-twice"),
    pytest.param(snapshot(R, attempt=3), event(K.FAILED, 2), id="failed-older-attempt"),
    pytest.param(snapshot(F), event(K.REDRIVEN, attempt_offset=1), id="redrive-reusing-attempts"),
    pytest.param(snapshot(P), event(K.STARTED, 0), id="started-attempt-zero"),
    pytest.param(
        snapshot(X, attempt=0, attempt_offset=2),
        event(K.REDRIVEN, attempt_offset=1),
        id="redrive-lowering-the-offset",
    ),
]
# After a re-drive at offset 3, events of attempts <= 3 belong to the previous run.
REDRIVEN = snapshot(P, attempt=3, attempt_offset=3, max_attempts=6)
STALE += [
    pytest.param(REDRIVEN, event(kind, attempt), id=f"previous-run-{kind.value}-{attempt}")
    for kind in (K.STARTED, K.PROGRESSED, K.RETRYING, K.COMPLETED, K.FAILED, K.CANCELLED)
    for attempt in (2, 3)
]


@pytest.mark.parametrize(("current", "stale"), STALE)
def test_stale_events_are_ignored(current: Snapshot, stale: Event) -> None:
    assert transition(current, stale) is None


def test_a_new_runs_first_attempt_counts_after_a_redrive() -> None:
    after = transition(REDRIVEN, event(K.STARTED, 4))
    assert after is not None
    assert (after.state, after.attempt) == (R, 4)


def test_a_redelivery_restarts_a_running_task_with_a_higher_attempt() -> None:
    current = snapshot(R, progress=Progress(7, 10), start_time=T0)
    after = transition(current, event(K.STARTED, 3, worker_id="w2"))
    assert after is not None
    assert (after.attempt, after.worker_id, after.start_time, after.progress) == (
        3, "w2", LATER, Progress(),
    )  # fmt: skip


def test_the_same_attempt_started_by_another_worker_restarts() -> None:
    after = transition(snapshot(R), event(K.STARTED, 2, worker_id="w3"))
    assert after is not None
    assert after.worker_id == "w3"


def test_an_older_attempt_completing_still_completes_without_lowering_the_attempt() -> None:
    after = transition(snapshot(R, attempt=3), event(K.COMPLETED, 2, result=b"r"))
    assert after is not None
    assert (after.state, after.attempt) == (C, 3)


def test_a_skipped_delivery_does_not_count_as_an_attempt() -> None:
    after = transition(snapshot(Y), event(K.CANCELLED, 3))
    assert after is not None
    assert (after.state, after.attempt) == (X, 2)


# --- Invariants over arbitrary event sequences -----------------------------------------

events = st.builds(
    lambda kind, attempt, worker, offset, budget, minutes: Event(
        kind=kind,
        task_id="01jaaaaaaaaaaaaaaaaaaaaaaa",
        time=T0 + dt.timedelta(minutes=minutes),
        attempt=attempt,
        worker_id=worker,
        created=snapshot(State.PENDING, version=1),
        progress=Progress(attempt, 10),
        error=bytes([attempt]),
        result=b"r",
        attempt_offset=offset,
        run_max_attempts=budget,
    ),
    st.sampled_from(list(Kind)),
    st.integers(0, 8),
    st.sampled_from(["w1", "w2"]),
    st.integers(0, 8),
    st.integers(1, 3),
    st.integers(0, 10_000),
)


@settings(max_examples=400, database=None, deadline=None)
@given(st.lists(events, max_size=40))
def test_invariants_hold_for_any_sequence(sequence: list[Event]) -> None:
    current: Snapshot | None = None
    for ev in sequence:
        after = transition(current, ev)
        if after is None:
            continue
        if current is None:
            assert (ev.kind, after.version) == (K.SUBMITTED, 1)
        else:
            assert after.version == current.version + 1, "version grows by one per change"
            assert after.attempt >= current.attempt, "attempts never go back"
            assert len(after.attempt_errors) >= len(current.attempt_errors)
            assert after.attempt_offset >= current.attempt_offset
            if current.terminal:
                assert ev.kind is K.REDRIVEN, "a terminal task only leaves by a re-drive"
                assert current.state in (F, X), "a completed task is never re-opened"
                assert after.state is P
            if ev.kind in (K.STARTED, K.PROGRESSED, K.RETRYING, K.COMPLETED, K.FAILED):
                assert ev.attempt > current.attempt_offset, "no event of a previous run counts"
        assert after.update_time == ev.time
        assert after.terminal == (after.end_time is not None)
        current = after
