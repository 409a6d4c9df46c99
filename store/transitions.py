"""The task state machine: a pure function from (snapshot, event) to the next snapshot.

Nothing here touches the database or protobuf messages. Payloads the machine only carries
(results, errors) stay opaque serialized bytes, so the store can write them back untouched;
:mod:`store.convert` translates between these dataclasses and the wire and table formats.

Every recorded change bumps ``version`` by one; an event that changes nothing returns
``None`` so the caller records no history and tells no watcher. Only STARTED moves
``attempt``: an attempt counts once it ran, not when a worker skipped or refused a delivery
(a cancelled task skipped, a delivery past the attempt budget failed without running).
"""

from __future__ import annotations

import datetime as dt
import enum
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar, dataclass_transform

from conveyor.auth.principal import DEFAULT_NAMESPACE
from conveyor.tasks import is_terminal


class State(enum.IntEnum):
    """Where a task is in its life; the numbers are those of ``conveyor.api.tasks.v1.TaskState``."""

    PENDING = 1
    SCHEDULED = 2
    RUNNING = 3
    RETRYING = 4
    COMPLETED = 5
    FAILED = 6
    CANCELLED = 7


class Kind(enum.Enum):
    """What an event says happened; the values are the ``TaskEvent.kind`` oneof field names."""

    SUBMITTED = "submitted"
    STARTED = "started"
    PROGRESSED = "progressed"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCEL_REQUESTED = "cancel_requested"
    CANCELLED = "cancelled"
    REDRIVEN = "redriven"


WORKER_KINDS = frozenset(
    {Kind.STARTED, Kind.PROGRESSED, Kind.RETRYING, Kind.COMPLETED, Kind.FAILED, Kind.CANCELLED}
)
"""Kinds published for one attempt; stale when their attempt belongs to a run before a re-drive."""

_REDRIVABLE = frozenset({State.FAILED, State.CANCELLED})
_QUEUED = frozenset({State.PENDING, State.SCHEDULED, State.RETRYING})


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a running attempt has got."""

    current: int = 0
    total: int = 0
    message: str = ""


_T = TypeVar("_T")


@dataclass_transform(frozen_default=True)
def _record(cls: type[_T]) -> type[_T]:
    """A slotted dataclass that mypy checks as frozen (an assignment to a field is a type
    error) but that is built as a plain one: a frozen dataclass's ``__init__`` sets each
    field through ``object.__setattr__``, eight times the cost of a plain one for these
    26 fields, and the store builds several snapshots and events per task it applies."""
    return dataclass(slots=True)(cls)


@_record
class Snapshot:
    """Everything the store knows about a task at one version, except its immutable input.

    ``max_attempts`` counts every attempt allowed across all runs (``attempt_offset`` plus
    the current run's budget), which is what users see. ``result`` and ``error`` hold
    serialized ``TaskResult``/``TaskError`` messages; ``attempt_errors`` serialized
    ``TaskError`` messages, oldest first.
    """

    id: str
    type: str
    state: State
    create_time: dt.datetime
    update_time: dt.datetime
    priority: int = 0
    attempt: int = 0
    max_attempts: int = 0
    attempt_offset: int = 0
    version: int = 1
    cancel_requested: bool = False
    idempotency_key: str = ""
    schedule_id: str = ""
    worker_id: str = ""
    timeout_seconds: float = 0.0
    labels: Mapping[str, str] = field(default_factory=dict)
    result: bytes | None = None
    error: bytes | None = None
    attempt_errors: tuple[bytes, ...] = ()
    progress: Progress = Progress()
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    run_at: dt.datetime | None = None
    next_attempt_time: dt.datetime | None = None
    namespace: str = DEFAULT_NAMESPACE
    trace_id: str = ""

    @property
    def terminal(self) -> bool:
        """True for COMPLETED, FAILED and CANCELLED."""
        return is_terminal(self.state)


@_record
class Event:
    """One ``TaskEvent`` in plain form; only the fields of its ``kind`` are meaningful.

    ``created`` is the new task of a SUBMITTED event (version 1); ``error`` and ``result``
    are serialized messages as in :class:`Snapshot`; ``attempt_offset`` and
    ``run_max_attempts`` are the REDRIVEN event's new offset and per-run budget.
    """

    kind: Kind
    task_id: str
    time: dt.datetime
    attempt: int = 0
    worker_id: str = ""
    created: Snapshot | None = None
    progress: Progress | None = None
    error: bytes | None = None
    result: bytes | None = None
    next_attempt_time: dt.datetime | None = None
    attempt_offset: int = 0
    run_max_attempts: int = 0


def transition(current: Snapshot | None, event: Event) -> Snapshot | None:
    """The snapshot after ``event``, with version and update time advanced; None if ignored.

    Ignored: a duplicate submit, any other event for an unknown task, anything but a
    re-drive of a FAILED or CANCELLED task once it is terminal, worker events of a run
    before the last re-drive, and events the current state or attempt makes meaningless.
    """
    if current is None:
        created = event.created
        if event.kind is not Kind.SUBMITTED or created is None:
            return None
        if created.version == 1 and created.update_time is event.time:
            return created  # already the first version (store.convert builds it so)
        return replace(created, version=1, update_time=event.time)
    if event.kind is Kind.SUBMITTED:
        return None
    if current.terminal and event.kind is not Kind.REDRIVEN:
        return None
    if event.kind in WORKER_KINDS and event.attempt <= current.attempt_offset:
        return None  # from a run before the last re-drive: its attempts are spent
    return _RULES[event.kind](current, event)


def _change(task: Snapshot, event: Event, **changes: Any) -> Snapshot:
    """The task with ``changes`` recorded as its next version at the event's time."""
    # Copying the 24-field frozen dataclass is most of the cost of a transition: all values
    # read at once and passed by position take half the time of dataclasses.replace().
    values = list(_VALUES(task))
    values[_VERSION] = task.version + 1
    values[_UPDATE_TIME] = event.time
    for name, value in changes.items():
        values[_INDEX[name]] = value
    return Snapshot(*values)


_NAMES = tuple(f.name for f in fields(Snapshot))
_VALUES = operator.attrgetter(*_NAMES)
_INDEX = {name: i for i, name in enumerate(_NAMES)}
_VERSION = _INDEX["version"]
_UPDATE_TIME = _INDEX["update_time"]


def _started(task: Snapshot, event: Event) -> Snapshot | None:
    if event.attempt < task.attempt:
        return None  # an older attempt's start arriving late
    if (
        task.state is State.RUNNING
        and event.attempt == task.attempt
        and event.worker_id == task.worker_id
    ):
        return None  # the same start published twice: restarting would only lose progress
    # A higher attempt while RUNNING is a redelivery after a crash or a lost heartbeat.
    return _change(
        task,
        event,
        state=State.RUNNING,
        attempt=event.attempt,
        start_time=event.time,
        worker_id=event.worker_id,
        progress=Progress(),
        next_attempt_time=None,
    )


def _progressed(task: Snapshot, event: Event) -> Snapshot | None:
    if task.state is not State.RUNNING or event.attempt != task.attempt:
        return None
    return _change(task, event, progress=event.progress or Progress())


def _retrying(task: Snapshot, event: Event) -> Snapshot | None:
    if task.state is not State.RUNNING or event.attempt != task.attempt:
        return None
    errors = task.attempt_errors if event.error is None else (*task.attempt_errors, event.error)
    if task.cancel_requested:
        # The client asked to cancel while this attempt ran: a further attempt must not run.
        return _change(
            task,
            event,
            state=State.CANCELLED,
            error=None,
            attempt_errors=errors,
            end_time=event.time,
        )
    return _change(
        task,
        event,
        state=State.RETRYING,
        error=event.error,
        attempt_errors=errors,
        next_attempt_time=event.next_attempt_time,
    )


def _completed(task: Snapshot, event: Event) -> Snapshot | None:
    # Accepted from any live state and any current-run attempt: a slow attempt that
    # finishes while a redelivery runs still completes the task, and because COMPLETED
    # ignores everything afterwards the task is never completed twice.
    return _change(
        task,
        event,
        state=State.COMPLETED,
        result=event.result,
        error=None,
        end_time=event.time,
        next_attempt_time=None,
    )


def _failed(task: Snapshot, event: Event) -> Snapshot | None:
    if event.attempt < task.attempt:
        return None  # an older attempt gave up, but a newer one is already under way
    errors = task.attempt_errors if event.error is None else (*task.attempt_errors, event.error)
    return _change(
        task,
        event,
        state=State.FAILED,
        error=event.error,
        attempt_errors=errors,
        end_time=event.time,
        next_attempt_time=None,
    )


def _cancel_requested(task: Snapshot, event: Event) -> Snapshot | None:
    if task.state in _QUEUED:
        return _change(
            task,
            event,
            state=State.CANCELLED,
            cancel_requested=True,
            end_time=event.time,
            next_attempt_time=None,
        )
    if task.cancel_requested:
        return None  # asked twice while running: nothing new to record
    return _change(task, event, cancel_requested=True)


def _cancelled(task: Snapshot, event: Event) -> Snapshot | None:
    return _change(
        task,
        event,
        state=State.CANCELLED,
        end_time=event.time,
        next_attempt_time=None,
    )


def _redriven(task: Snapshot, event: Event) -> Snapshot | None:
    if task.state not in _REDRIVABLE:
        return None
    if event.attempt_offset < max(task.attempt, task.attempt_offset):
        # A new run must start numbering after every attempt already made or skipped; a
        # lower offset is a stale or duplicated re-drive and would let old events count.
        return None
    return _change(
        task,
        event,
        state=State.PENDING,
        attempt_offset=event.attempt_offset,
        max_attempts=event.attempt_offset + event.run_max_attempts,
        cancel_requested=False,
        result=None,
        error=None,
        progress=Progress(),
        end_time=None,
        next_attempt_time=None,
    )


_RULES: dict[Kind, Callable[[Snapshot, Event], Snapshot | None]] = {
    Kind.STARTED: _started,
    Kind.PROGRESSED: _progressed,
    Kind.RETRYING: _retrying,
    Kind.COMPLETED: _completed,
    Kind.FAILED: _failed,
    Kind.CANCEL_REQUESTED: _cancel_requested,
    Kind.CANCELLED: _cancelled,
    Kind.REDRIVEN: _redriven,
}
