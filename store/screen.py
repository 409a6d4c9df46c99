"""The store's check of every event before it is applied: what no legitimate publisher
can produce is refused (acknowledged with its batch, never applied).

NATS permissions let each service role publish events only on its own subjects
(``conveyor.events.<publisher>.<type>``, conveyor.natsauth), so the subject names who
published an event. The store then checks that the kind may come from that publisher,
that ids, types, labels, options and sizes obey the gateway's own rules
(``conveyor.intake``), and, against the task's current snapshot, what only a task's own
run can say (its type, an attempt within its budget). A worker's credentials, the
weakest that can publish events at all, can then still report an outcome for a task
that runs, but no longer create, resurrect, rename or cancel one, nor write what
the gateway would refuse.

A refusal is logged once per kind of problem (then at debug level) and counted in
``conveyor_store_refused_events_total{reason}``; it never holds the stream up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from google.protobuf.message import DecodeError

from conveyor import subjects
from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.auth.principal import NAMESPACE_PATTERN
from conveyor.config import PAYLOAD_INLINE_MAX, Limits
from conveyor.ids import is_task_id
from conveyor.intake.checks import Collector
from conveyor.intake.inputs import check_input
from conveyor.intake.validation import MAX_ATTEMPTS, check_task_options
from conveyor.messages import LOST_ERROR, SCHEDULER_ID, events_of
from conveyor.tasks import task_type_of
from conveyor.tracebacks import MAX_ERROR_CHARS, MAX_TRACEBACK_BYTES
from store.transitions import Event, Kind, Snapshot

log = logging.getLogger(__name__)

KINDS_BY_PUBLISHER: dict[str, frozenset[str]] = {
    subjects.GATEWAY: frozenset({"submitted"}),
    subjects.SCHEDULER: frozenset({"submitted", "failed"}),
    subjects.STORE: frozenset({"cancel_requested", "redriven"}),
    subjects.WORKER: frozenset(
        {"started", "progressed", "retrying", "completed", "failed", "cancelled"}
    ),
}
"""What each role publishes (docs/architecture.md, "Message ids")."""
ALL_KINDS = frozenset().union(*KINDS_BY_PUBLISHER.values())
MAX_WORKER_ID_CHARS = 255
MAX_BATCH_EVENTS = 4096
"""The most events one EVENTS message may hold (a ``TaskEvents`` batch): far above what a
publisher groups into one flush, low enough that a hostile count or batch is refused
before it is parsed or applied."""
_MAX_COUNT = str(MAX_BATCH_EVENTS)
MAX_RESULT_BYTES = PAYLOAD_INLINE_MAX + 64 * 1024
"""A worker puts a larger result in the object store and sends an abridged copy, which
the abridging keeps under the inline limit (conveyor.payloads.abridge)."""
BUDGETED = frozenset({Kind.STARTED, Kind.PROGRESSED, Kind.RETRYING, Kind.COMPLETED})
"""Kinds only an attempt within the task's budget publishes (a delivery past the budget
is failed or cancelled without running)."""

Problem = tuple[str, str]
"""(reason, what is wrong): the reason is the metric's label, a small fixed set."""


def problem_of(
    subject: str, event: events_pb2.TaskEvent, size: int, limits: Limits
) -> Problem | None:
    """What makes an event on ``subject`` (``size`` bytes) impossible for its publisher,
    or None. Checks only the event itself; :func:`problem_against` needs its task."""
    publisher, subject_type = subjects.event_origin(subject)
    if publisher is None:
        return "subject", f"{subject!r} is not an event subject"
    kind = event.WhichOneof("kind")
    if kind is None:
        return None  # nothing to apply; the applier skips it
    if publisher != subjects.LEGACY_PUBLISHER and kind not in KINDS_BY_PUBLISHER[publisher]:
        return "publisher", f"a {kind} event cannot come from the {publisher}"
    if size > limits.max_message_bytes:
        return "size", f"{size} bytes, over {limits.max_message_bytes}"
    if not is_task_id(event.task_id):
        return "task_id", f"task id {event.task_id[:64]!r} is not one the gateway issues"
    if event.type != subject_type or not subjects.TASK_TYPE_PATTERN.match(event.type):
        return "type", f"type {event.type[:64]!r} on subject {subject!r}"
    if kind == "submitted":
        return _submitted_problem(event, limits)
    if kind in KINDS_BY_PUBLISHER[subjects.WORKER]:
        return _worker_problem(event, publisher, kind)
    if kind == "redriven" and event.redriven.max_attempts > MAX_ATTEMPTS:
        return "options", f"re-driven with {event.redriven.max_attempts} attempts"
    return None


def _submitted_problem(event: events_pb2.TaskEvent, limits: Limits) -> Problem | None:
    task = event.submitted.task
    if task.id != event.task_id or task.type != event.type:
        return "type", f"the task inside is {task.id[:64]!r} of type {task.type[:64]!r}"
    if task_type_of(event.submitted.input) != task.type:
        return "type", f"the input is of type {task_type_of(event.submitted.input)[:64]!r}"
    if task.state not in (tasks_pb2.TASK_STATE_PENDING, tasks_pb2.TASK_STATE_SCHEDULED):
        return "state", f"submitted in state {task.state}"
    if not 1 <= task.max_attempts <= MAX_ATTEMPTS:
        return "options", f"max_attempts {task.max_attempts}"
    if task.namespace and not NAMESPACE_PATTERN.match(task.namespace):
        return "namespace", f"namespace {task.namespace[:64]!r} is not one the gateway accepts"
    c = Collector()
    # run_at is left out: the gateway checked it against its own clock at submit.
    check_task_options(c, task)
    if c.found:
        reason = "labels" if c.found[0].field.startswith("labels") else "options"
        return reason, f"{c.found[0].field} {c.found[0].description}"
    if not event.submitted.input.HasField("payload"):  # an abridged input was checked whole
        check_input(c, event.submitted.input, limits)
        if c.found:
            return "input", f"{c.found[0].field} {c.found[0].description}"
    return None


def _worker_problem(event: events_pb2.TaskEvent, publisher: str, kind: str) -> Problem | None:
    if event.attempt < 1:
        return "attempt", f"a {kind} event of attempt {event.attempt}"
    if not event.worker_id or len(event.worker_id) > MAX_WORKER_ID_CHARS:
        return "worker", f"worker id {event.worker_id[:64]!r}"
    if publisher == subjects.SCHEDULER and (
        event.worker_id != SCHEDULER_ID or event.failed.error.type != LOST_ERROR
    ):
        return "publisher", "the scheduler fails only lost tasks"
    if kind == "completed" and (size := event.completed.result.ByteSize()) > MAX_RESULT_BYTES:
        return "size", f"an inline result of {size} bytes, over {MAX_RESULT_BYTES}"
    if kind in ("retrying", "failed"):
        return _error_problem(getattr(event, kind).error)
    return None


def _error_problem(error: tasks_pb2.TaskError) -> Problem | None:
    """What is over the bounds a worker keeps to in a failed attempt's error (each
    attempt's error is kept with its task, up to MAX_ATTEMPTS of them)."""
    if len(error.type) > MAX_ERROR_CHARS or len(error.message) > MAX_ERROR_CHARS:
        return "size", f"an error type or message over {MAX_ERROR_CHARS} characters"
    if (size := len(error.traceback.encode("utf-8"))) > MAX_TRACEBACK_BYTES:
        return "size", f"a traceback of {size} bytes, over {MAX_TRACEBACK_BYTES}"
    return None


def problem_against(current: Snapshot, event: Event, event_type: str) -> Problem | None:
    """What makes ``event`` (of a task of ``event_type``) impossible for the task as it is
    (None when possible). Late or repeated events are possible: the state machine ignores
    them."""
    if event_type != current.type:
        return "type", f"a {event_type!r} event for a task of type {current.type!r}"
    if event.kind in BUDGETED and event.attempt > current.max_attempts:
        return "attempt", f"attempt {event.attempt} of a task allowed {current.max_attempts}"
    return None


class Refusals:
    """Logs a refused event (once per reason at warning level, then at debug) and counts
    it with ``count(reason)``."""

    def __init__(self, count: Callable[[str], None] | None = None) -> None:
        self._count = count
        self._logged: set[str] = set()

    def __call__(self, sequence: int, task_id: str, problem: Problem) -> None:
        reason, detail = problem
        level = logging.DEBUG if reason in self._logged else logging.WARNING
        self._logged.add(reason)
        log.log(
            level,
            "refused event %d of task %r (%s: %s); further %s refusals are logged at debug",
            sequence,
            task_id[:64],
            reason,
            detail,
            reason,
        )
        if self._count is not None:
            self._count(reason)


class EventScreen:
    """Decodes each message the store reads from EVENTS and keeps the events it may apply."""

    def __init__(self, limits: Limits | None = None, refusals: Refusals | None = None) -> None:
        self.limits = limits or Limits()
        self.refuse = refusals or Refusals()

    def admit(
        self,
        sequence: int,
        subject: str,
        data: bytes,
        headers: Mapping[str, str] | None,
    ) -> list[events_pb2.TaskEvent]:
        """The events of the message at ``sequence`` that may be applied, in order: its
        one event, or those of its batch (``Conveyor-Events`` header), each screened alone.
        A batch that is malformed, miscounted or over MAX_BATCH_EVENTS is refused whole."""
        count = headers.get(subjects.HEADER_EVENT_COUNT) if headers else None
        if count is not None:
            return self._admit_batch(sequence, subject, data, count)
        try:
            event = events_pb2.TaskEvent.FromString(data)
        except DecodeError:
            self.refuse(sequence, "", ("malformed", "not a TaskEvent"))
            return []
        problem = problem_of(subject, event, len(data), self.limits)
        if problem is not None:
            self.refuse(sequence, event.task_id, problem)
            return []
        return [event]

    def _admit_batch(
        self, sequence: int, subject: str, data: bytes, count: str
    ) -> list[events_pb2.TaskEvent]:
        # The count is checked before the bytes are parsed: a hostile one costs nothing.
        if not (count.isascii() and count.isdigit() and len(count) <= len(_MAX_COUNT)):
            self.refuse(sequence, "", ("malformed", f"a batch said to hold {count[:32]!r} events"))
            return []
        if int(count) > MAX_BATCH_EVENTS:
            self.refuse(
                sequence, "", ("size", f"a batch of {count} events, over {MAX_BATCH_EVENTS}")
            )
            return []
        try:
            events = events_of({subjects.HEADER_EVENT_COUNT: count}, data)
        except DecodeError as exc:
            self.refuse(sequence, "", ("malformed", f"not a TaskEvents batch ({exc})"))
            return []
        admitted = []
        for event in events:
            problem = problem_of(subject, event, event.ByteSize(), self.limits)
            if problem is None:
                admitted.append(event)
            else:
                self.refuse(sequence, event.task_id, problem)
        return admitted
