"""Request validation: the one place that decides what a well-formed request is.

Every check reports a :class:`~conveyor.errors.FieldViolation` naming the offending field
by its path in the request (``text_processing.text``, ``options.labels["k"]``,
``requests[3].image_processing.image``) and keeps going, so a client learns about every
problem in one round trip. The gateway turns the raised
:class:`~conveyor.errors.InvalidArgument` into ``INVALID_ARGUMENT`` with
``google.rpc.BadRequest`` details.

Nothing here trusts the generated types: proto3 keeps enum numbers it does not know, so
enums are checked against their declared values, and doubles may be NaN.

>>> from conveyor.api.tasks.v1 import tasks_pb2
>>> from conveyor.config import Limits
>>> request = tasks_pb2.SubmitTaskRequest(text_processing={"text": ""})
>>> try:
...     validate_submit(request, Limits())
... except InvalidArgument as exc:
...     print([v.field for v in exc.violations])
['text_processing.text']
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.config import Limits
from conveyor.errors import FieldViolation, InvalidArgument
from conveyor.ids import is_task_id
from conveyor.jsonlike import MAX_DEPTH
from conveyor.subjects import TASK_TYPE_PATTERN
from conveyor.tasks import BUILTIN_TYPES, TERMINAL_STATES
from gateway.unknown import unknown_fields_of

MAX_VIOLATIONS = 100
"""Violations reported per call; past this a request is hostile or badly broken."""
MAX_SENTENCES = 100
MAX_TOP_WORDS = 100
MAX_TRANSFORMS = 16
MAX_BATCH_ITEM_BYTES = 64 * 1024
BATCH_TOTAL_FACTOR = 8
"""Batch items may total ``max_text_bytes * 8`` bytes (8 MiB by default), so the result,
which echoes an output per item, still fits in one 16 MiB message."""
MAX_CHUNK_SIZE = 10_000
RESULT_HEADROOM = 1024 * 1024
"""What the rest of a task and its envelopes may need in a message beside its result."""
MAX_IMAGE_OPERATIONS = 20
MAX_IMAGE_SIDE = 10_000
MAX_IMAGE_PIXELS = 50_000_000
"""As the image handler's limit: about 200 MB decoded as RGBA."""
MAX_ROTATE_DEGREES = 360.0
MAX_ATTEMPTS = 100
MAX_TIMEOUT = dt.timedelta(hours=24)
MAX_DELAY = dt.timedelta(days=365)
MAX_IDEMPOTENCY_KEY_CHARS = 200
MAX_LABELS = 32
LABEL_KEY_PATTERN = re.compile(r"^[a-zA-Z0-9._/-]{1,63}$")
MAX_LABEL_VALUE_CHARS = 255
MAX_PAYLOAD_DEPTH = MAX_DEPTH
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_PAGE_TOKEN_CHARS = 512

INPUT_FIELDS = (*BUILTIN_TYPES, "custom")
_IMAGE_OPERATIONS = ("resize", "thumbnail", "grayscale", "rotate")

# Timestamp's documented range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
_MIN_TIMESTAMP_SECONDS = -62_135_596_800
_MAX_TIMESTAMP_SECONDS = 253_402_300_799
_NANOS = 1_000_000_000


class _Collector:
    """Gathers violations under a path prefix, up to MAX_VIOLATIONS shared by all prefixes."""

    def __init__(self, prefix: str = "", found: list[FieldViolation] | None = None) -> None:
        self.prefix = prefix
        self.found: list[FieldViolation] = [] if found is None else found

    @property
    def full(self) -> bool:
        return len(self.found) >= MAX_VIOLATIONS

    def add(self, field: str, description: str) -> None:
        if not self.full:
            self.found.append(FieldViolation(self.prefix + field, description))

    def child(self, prefix: str) -> _Collector:
        return _Collector(self.prefix + prefix, self.found)

    def raise_if_any(self) -> None:
        if self.found:
            raise InvalidArgument.for_fields(self.found)


def _enum_names(values: Mapping[str, int], allow_zero: bool) -> str:
    return ", ".join(name for name, number in values.items() if allow_zero or number != 0)


def _check_enum(
    c: _Collector, field: str, values: Mapping[str, int], value: int, *, allow_zero: bool
) -> None:
    """Reports a value that is not declared (or is the forbidden zero) in its enum."""
    if value == 0 and not allow_zero:
        c.add(field, f"must be set to one of {_enum_names(values, allow_zero)}")
    elif value not in values.values():
        c.add(field, f"unknown value {value}; expected one of {_enum_names(values, allow_zero)}")


_TRANSFORMS: dict[str, int] = dict(tasks_pb2.TextTransform.items())
_BATCH_OPERATIONS: dict[str, int] = dict(tasks_pb2.BatchOperation.items())
_IMAGE_FORMATS: dict[str, int] = dict(tasks_pb2.ImageFormat.items())
_PRIORITIES: dict[str, int] = dict(tasks_pb2.TaskPriority.items())
_STATES: dict[str, int] = dict(tasks_pb2.TaskState.items())
_NAMES: dict[int, str] = {number: name for name, number in _TRANSFORMS.items()}

# The most UTF-8 bytes an output has per byte of input, for text that is not ASCII (ASCII
# text never grows): upper and title case can triple a character ("ΐ" is "Ϊ́" in upper
# case); unlisted transforms never make text longer.
_TRANSFORM_GROWTH: dict[int, float] = {
    tasks_pb2.TEXT_TRANSFORM_UPPER: 3.0,
    tasks_pb2.TEXT_TRANSFORM_TITLE: 3.0,
    tasks_pb2.TEXT_TRANSFORM_LOWER: 1.5,
    tasks_pb2.TEXT_TRANSFORM_SLUG: 2.0,
}
_ITEM_RESULT_BYTES = 16
"""What one BatchItemResult adds to the result beside its output (index, flags, framing)."""


def _utf8_size(text: str) -> int:
    # surrogatepass: a str built in-process may hold lone surrogates; count, never crash.
    return len(text.encode("utf-8", "surrogatepass"))


def _check_text(c: _Collector, field: str, text: str, limits: Limits) -> None:
    if not text:
        c.add(field, "must not be empty")
    elif (size := _utf8_size(text)) > limits.max_text_bytes:
        c.add(field, f"must be at most {limits.max_text_bytes} bytes of UTF-8 (got {size})")


def _check_at_most(c: _Collector, field: str, value: float, limit: float) -> None:
    if value > limit:
        c.add(field, f"must be at most {limit} (got {value})")


def _quote(key: str) -> str:
    """A map key as it appears in a field path; long keys are cut so the path stays short."""
    return json.dumps(key[:64], ensure_ascii=False)


# --- inputs ------------------------------------------------------------------------------


def _check_text_processing(
    c: _Collector, msg: tasks_pb2.TextProcessingInput, limits: Limits
) -> None:
    _check_text(c, "text", msg.text, limits)
    _check_at_most(c, "top_words", msg.top_words, MAX_TOP_WORDS)
    if len(msg.transforms) > MAX_TRANSFORMS:
        c.add("transforms", f"at most {MAX_TRANSFORMS} transforms (got {len(msg.transforms)})")
    first: dict[int, int] = {}
    for i, transform in enumerate(msg.transforms[:MAX_TRANSFORMS]):
        _check_enum(c, f"transforms[{i}]", _TRANSFORMS, transform, allow_zero=False)
        if transform in first and len(msg.transforms) <= MAX_TRANSFORMS:
            # Each output is the whole text again: repeats would only multiply the result.
            name = _NAMES.get(transform, str(transform))
            c.add(f"transforms[{i}]", f"{name} is already asked for at [{first[transform]}]")
        first.setdefault(transform, i)
    size = _utf8_size(msg.text)
    if size > limits.max_text_bytes:
        return  # reported above
    if not msg.text.isascii():
        growth = sum(_TRANSFORM_GROWTH.get(t, 1.0) for t in first)
    else:
        growth = len(first)
    # The top words, at most the text once, come with the transforms' outputs.
    _check_result_size(c, "text", int(size * (1 + growth)), limits, "fewer transforms")


def _check_ai_summarization(
    c: _Collector, msg: tasks_pb2.AiSummarizationInput, limits: Limits
) -> None:
    _check_text(c, "text", msg.text, limits)
    _check_at_most(c, "max_sentences", msg.max_sentences, MAX_SENTENCES)


def _check_batch_processing(
    c: _Collector, msg: tasks_pb2.BatchProcessingInput, limits: Limits
) -> None:
    count = len(msg.items)
    if count == 0:
        c.add("items", "must have at least one item")
    elif count > limits.max_batch_items:
        c.add("items", f"at most {limits.max_batch_items} items (got {count})")
    else:
        total = result = 0
        for i, item in enumerate(msg.items):
            size = _utf8_size(item)
            total += size
            result += _item_result_bytes(msg.operation, item, size)
            if size > MAX_BATCH_ITEM_BYTES:
                c.add(f"items[{i}]", f"must be at most {MAX_BATCH_ITEM_BYTES} bytes (got {size})")
                if c.full:
                    break
        max_total = limits.max_text_bytes * BATCH_TOTAL_FACTOR
        if total > max_total:
            c.add("items", f"must total at most {max_total} bytes (got {total})")
        else:
            _check_result_size(c, "items", result, limits, "fewer items")
    _check_enum(c, "operation", _BATCH_OPERATIONS, msg.operation, allow_zero=False)
    _check_at_most(c, "chunk_size", msg.chunk_size, MAX_CHUNK_SIZE)


def _item_result_bytes(operation: int, item: str, size: int) -> int:
    """The most bytes an item's outcome can add to a batch's result."""
    if operation == tasks_pb2.BATCH_OPERATION_UPPERCASE:
        output = size if item.isascii() else 3 * size
    elif operation == tasks_pb2.BATCH_OPERATION_SHA256:
        output = 64
    elif operation == tasks_pb2.BATCH_OPERATION_WORD_COUNT:
        output = 10
    elif operation == tasks_pb2.BATCH_OPERATION_SQUARE:
        # Digits double, up to the 4,300 Python prints (a larger square is an item error);
        # an error quotes at most 41 characters, each escaped to 10 at most.
        output = max(min(2 * size + 1, 4301), 40 + 10 * min(size, 41))
    else:
        output = size
    return output + _ITEM_RESULT_BYTES


def _check_result_size(
    c: _Collector, field: str, estimate: int, limits: Limits, remedy: str
) -> None:
    """Reports an input whose result could outgrow a message."""
    budget = limits.max_message_bytes - RESULT_HEADROOM
    if estimate > budget:
        c.add(
            field,
            f"its result could take {estimate} bytes, more than the {budget} a result may "
            f"have; ask for {remedy}",
        )


def _check_side(c: _Collector, field: str, value: int) -> None:
    if not 1 <= value <= MAX_IMAGE_SIDE:
        c.add(field, f"must be between 1 and {MAX_IMAGE_SIDE} pixels (got {value})")


def _check_image_operation(c: _Collector, op: tasks_pb2.ImageOperation) -> None:
    which = op.WhichOneof("operation")
    if which is None:
        c.add("operation", f"one of {', '.join(_IMAGE_OPERATIONS)} must be set")
    elif which == "resize":
        _check_side(c, "resize.width", op.resize.width)
        _check_side(c, "resize.height", op.resize.height)
        if (pixels := op.resize.width * op.resize.height) > MAX_IMAGE_PIXELS:
            c.add("resize", f"must be at most {MAX_IMAGE_PIXELS} pixels (got {pixels})")
    elif which == "thumbnail":
        _check_side(c, "thumbnail.max_width", op.thumbnail.max_width)
        _check_side(c, "thumbnail.max_height", op.thumbnail.max_height)
    elif which == "rotate":
        degrees = op.rotate.degrees
        if not (math.isfinite(degrees) and abs(degrees) <= MAX_ROTATE_DEGREES):
            c.add("rotate.degrees", f"must be between -360 and 360 (got {degrees})")


def _check_image_processing(
    c: _Collector, msg: tasks_pb2.ImageProcessingInput, limits: Limits
) -> None:
    if not msg.image:
        c.add("image", "must not be empty")
    elif len(msg.image) > limits.max_image_bytes:
        c.add("image", f"must be at most {limits.max_image_bytes} bytes (got {len(msg.image)})")
    if len(msg.operations) > MAX_IMAGE_OPERATIONS:
        c.add("operations", f"at most {MAX_IMAGE_OPERATIONS} operations")
    for i, op in enumerate(msg.operations[:MAX_IMAGE_OPERATIONS]):
        _check_image_operation(c.child(f"operations[{i}]."), op)
    _check_enum(c, "output_format", _IMAGE_FORMATS, msg.output_format, allow_zero=True)


def _check_payload_value(c: _Collector, field: str, value: struct_pb2.Value, depth: int) -> None:
    """Reports what JSON cannot carry (NaN, infinities) and nesting a handler cannot walk."""
    if depth > MAX_PAYLOAD_DEPTH:
        c.add(field, f"must not be nested deeper than {MAX_PAYLOAD_DEPTH} levels")
        return
    kind = value.WhichOneof("kind")
    if kind == "number_value" and not math.isfinite(value.number_value):
        c.add(field, "must be a finite number")
    elif kind == "struct_value":
        for key, item in value.struct_value.fields.items():
            _check_payload_value(c, f"{field}[{_quote(key)}]", item, depth + 1)
    elif kind == "list_value":
        for i, item in enumerate(value.list_value.values):
            _check_payload_value(c, f"{field}[{i}]", item, depth + 1)


def _check_custom(c: _Collector, msg: tasks_pb2.CustomTaskInput, limits: Limits) -> None:
    if not msg.type:
        c.add("type", "must not be empty")
    elif msg.type in BUILTIN_TYPES:
        c.add("type", f"{msg.type} is built in: set the {msg.type} field instead of custom")
    elif not TASK_TYPE_PATTERN.match(msg.type):
        c.add("type", "must match [a-z][a-z0-9_]{0,63}")
    size = msg.payload.ByteSize()
    if size > limits.max_text_bytes:
        c.add("payload", f"must be at most {limits.max_text_bytes} bytes encoded (got {size})")
        return
    for key, value in msg.payload.fields.items():
        _check_payload_value(c, f"payload[{_quote(key)}]", value, 1)


# --- options -----------------------------------------------------------------------------


def _duration_error(d: duration_pb2.Duration, maximum: dt.timedelta) -> str | None:
    if abs(d.nanos) >= _NANOS or (d.seconds > 0 > d.nanos) or (d.seconds < 0 < d.nanos):
        return "is not a valid duration (nanos out of range or of the wrong sign)"
    if d.seconds < 0 or d.nanos < 0:
        return "must not be negative"
    if d.ToNanoseconds() > maximum // dt.timedelta(microseconds=1) * 1000:
        return f"must be at most {maximum}"
    return None


def _check_labels(c: _Collector, field: str, labels: Mapping[str, str]) -> None:
    if len(labels) > MAX_LABELS:
        c.add(field, f"at most {MAX_LABELS} labels (got {len(labels)})")
        return
    for key, value in labels.items():
        path = f"{field}[{_quote(key)}]"
        if not LABEL_KEY_PATTERN.match(key):
            c.add(path, "key must match [a-zA-Z0-9._/-]{1,63}")
        if len(value) > MAX_LABEL_VALUE_CHARS:
            c.add(path, f"value must be at most {MAX_LABEL_VALUE_CHARS} characters")


def _check_options(c: _Collector, msg: tasks_pb2.TaskOptions, now: dt.datetime) -> None:
    _check_at_most(c, "max_attempts", msg.max_attempts, MAX_ATTEMPTS)
    if msg.HasField("timeout") and (problem := _duration_error(msg.timeout, MAX_TIMEOUT)):
        c.add("timeout", problem)
    _check_enum(c, "priority", _PRIORITIES, msg.priority, allow_zero=True)
    key = msg.idempotency_key
    if len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        c.add("idempotency_key", f"must be at most {MAX_IDEMPOTENCY_KEY_CHARS} characters")
    elif not key.isprintable():
        c.add("idempotency_key", "must contain printable characters only")
    _check_labels(c, "labels", msg.labels)
    if msg.HasField("delay"):
        if msg.HasField("run_at"):
            c.add("delay", "set either delay or run_at, not both")
        elif problem := _duration_error(msg.delay, MAX_DELAY):
            c.add("delay", problem)
    if msg.HasField("run_at"):
        _check_run_at(c, msg.run_at, now)


def _check_run_at(c: _Collector, ts: timestamp_pb2.Timestamp, now: dt.datetime) -> None:
    if not (
        _MIN_TIMESTAMP_SECONDS <= ts.seconds <= _MAX_TIMESTAMP_SECONDS and 0 <= ts.nanos < _NANOS
    ):
        c.add("run_at", "is not a valid timestamp")
    elif ts.ToDatetime(tzinfo=dt.UTC) > now + MAX_DELAY:
        # A time in the past is fine: the task is due at once.
        c.add("run_at", f"must be at most {MAX_DELAY.days} days in the future")


# --- entry points ------------------------------------------------------------------------


def _check_submit(
    c: _Collector, request: tasks_pb2.SubmitTaskRequest, limits: Limits, now: dt.datetime
) -> None:
    which = request.WhichOneof("input")
    if which is None:
        c.add("input", f"one of {', '.join(INPUT_FIELDS)} must be set")
    elif which == "text_processing":
        _check_text_processing(c.child("text_processing."), request.text_processing, limits)
    elif which == "ai_summarization":
        _check_ai_summarization(c.child("ai_summarization."), request.ai_summarization, limits)
    elif which == "batch_processing":
        _check_batch_processing(c.child("batch_processing."), request.batch_processing, limits)
    elif which == "image_processing":
        _check_image_processing(c.child("image_processing."), request.image_processing, limits)
    elif which == "custom":
        _check_custom(c.child("custom."), request.custom, limits)
    if request.HasField("options"):
        _check_options(c.child("options."), request.options, now)
    for field, description in unknown_fields_of(request):
        c.add(field, description)


def validate_submit(
    request: tasks_pb2.SubmitTaskRequest,
    limits: Limits,
    prefix: str = "",
    *,
    now: dt.datetime | None = None,
) -> None:
    """Raises InvalidArgument naming every invalid field of a submit request.

    ``prefix`` is put before every field path; ``now`` (UTC) is for tests.
    """
    c = _Collector(prefix)
    _check_submit(c, request, limits, now or dt.datetime.now(dt.UTC))
    c.raise_if_any()


def validate_submit_many(
    request: tasks_pb2.SubmitTasksRequest, limits: Limits, *, now: dt.datetime | None = None
) -> None:
    """Raises InvalidArgument naming every invalid field of every request of a batch.

    Paths start with ``requests[i].``; at most MAX_VIOLATIONS are listed.
    """
    c = _Collector()
    count = len(request.requests)
    if count == 0:
        c.add("requests", "must have at least one request")
    elif count > limits.max_tasks_per_call:
        c.add("requests", f"at most {limits.max_tasks_per_call} tasks per call (got {count})")
    else:
        moment = now or dt.datetime.now(dt.UTC)
        for i, item in enumerate(request.requests):
            _check_submit(c.child(f"requests[{i}]."), item, limits, moment)
            if c.full:
                break
    for field, description in unknown_fields_of(request, nested=False):
        c.add(field, description)
    c.raise_if_any()


STATS_DEFAULT_WINDOW = dt.timedelta(hours=1)
STATS_MAX_WINDOW = dt.timedelta(days=31)
STATS_MAX_TOP_ERRORS = 50


def validate_stats(request: tasks_pb2.GetTaskStatsRequest) -> tuple[dt.timedelta, int]:
    """Checks a stats request; returns its window (default one hour) and how many top
    errors to report (default 5)."""
    c = _Collector()
    window = STATS_DEFAULT_WINDOW
    if request.HasField("window"):
        problem = _duration_error(request.window, STATS_MAX_WINDOW)
        if problem:
            c.add("window", problem)
        elif request.window.ToTimedelta() > dt.timedelta(0):
            window = request.window.ToTimedelta()
    if request.type and not TASK_TYPE_PATTERN.match(request.type):
        c.add("type", f"must match {TASK_TYPE_PATTERN.pattern}")
    if request.top_errors > STATS_MAX_TOP_ERRORS:
        c.add("top_errors", f"must be at most {STATS_MAX_TOP_ERRORS}")
    c.raise_if_any()
    return window, request.top_errors or 5


def validate_task_id(task_id: str, field: str = "task_id") -> None:
    """Raises InvalidArgument unless task_id has the shape of a task id."""
    if not task_id:
        raise InvalidArgument.for_fields([FieldViolation(field, "must not be empty")])
    if not is_task_id(task_id):
        raise InvalidArgument.for_fields(
            [FieldViolation(field, "must be a 26-character task id (lower-case base32)")]
        )


def validate_list(request: tasks_pb2.ListTasksRequest) -> int:
    """Raises InvalidArgument naming every invalid filter; returns the page size to use.

    A page size of 0 means DEFAULT_PAGE_SIZE and one above MAX_PAGE_SIZE is clamped to it
    rather than refused, so a client asking for "everything" still gets pages.
    """
    c = _Collector()
    for i, state in enumerate(request.states):
        _check_enum(c, f"states[{i}]", _STATES, state, allow_zero=False)
    if request.type and not TASK_TYPE_PATTERN.match(request.type):
        c.add("type", "must match [a-z][a-z0-9_]{0,63}")
    _check_labels(c, "labels", request.labels)
    if len(request.page_token) > MAX_PAGE_TOKEN_CHARS:
        c.add("page_token", f"must be at most {MAX_PAGE_TOKEN_CHARS} characters")
    c.raise_if_any()
    return page_size_of(request)


def page_size_of(request: tasks_pb2.ListTasksRequest) -> int:
    """The page size a list request gets: 0 means the default, and large sizes are clamped."""
    return min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


PURGE_MAX_AGE = dt.timedelta(days=36_500)


def validate_purge(request: tasks_pb2.PurgeTasksRequest) -> tuple[list[int], dt.timedelta]:
    """Checks a purge request; returns its states (every terminal one when none is
    given) and how long ago the tasks must have finished (0: any time)."""
    c = _Collector()
    for i, state in enumerate(request.states):
        if state not in TERMINAL_STATES:
            c.add(f"states[{i}]", "must be COMPLETED, FAILED or CANCELLED: only finished tasks")
    if request.type and not TASK_TYPE_PATTERN.match(request.type):
        c.add("type", "must match [a-z][a-z0-9_]{0,63}")
    older_than = dt.timedelta(0)
    if request.HasField("older_than"):
        problem = _duration_error(request.older_than, PURGE_MAX_AGE)
        if problem:
            c.add("older_than", problem)
        else:
            older_than = request.older_than.ToTimedelta()
    c.raise_if_any()
    return sorted(set(request.states) or TERMINAL_STATES), older_than
