"""Builders of submit requests, one per task type, and of their options.

Enum arguments take short names ("upper", "sha256", "png", "high"), full proto names
or numbers, so scripts and the CLI never spell ``TEXT_TRANSFORM_UPPER``::

    >>> from conveyor.client import text_processing
    >>> request = text_processing("hello world", ["upper", "slug"], priority="high", max_attempts=3)
    >>> request.options.max_attempts
    3

A builder raises ValueError for a name it does not know; limits are the gateway's to
check, so a request built here may still be refused with InvalidArgument.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict, Unpack

from google.protobuf import duration_pb2, timestamp_pb2

from conveyor import jsonlike
from conveyor.api.tasks.v1 import tasks_pb2

EnumArg = str | int
"""An enum value: a short name ("upper"), a full name ("TEXT_TRANSFORM_UPPER") or a number."""
Seconds = float | dt.timedelta


def _short_names(values: Iterable[tuple[str, int]], prefix: str) -> dict[str, int]:
    return {name.removeprefix(prefix).lower(): number for name, number in values if number != 0}


TRANSFORMS = _short_names(tasks_pb2.TextTransform.items(), "TEXT_TRANSFORM_")
"""Short transform names (upper, lower, title, reverse, slug, ...) to their numbers."""
BATCH_OPERATIONS = _short_names(tasks_pb2.BatchOperation.items(), "BATCH_OPERATION_")
"""Short batch operation names (uppercase, reverse, sha256, word_count, square)."""
IMAGE_FORMATS = _short_names(tasks_pb2.ImageFormat.items(), "IMAGE_FORMAT_")
"""Short image format names (png, jpeg, webp, gif, bmp)."""
PRIORITIES = _short_names(tasks_pb2.TaskPriority.items(), "TASK_PRIORITY_")
"""Short priority names (high, normal, low)."""
STATES = _short_names(tasks_pb2.TaskState.items(), "TASK_STATE_")
"""Short state names (pending, scheduled, running, retrying, completed, failed, cancelled)."""


def enum_value(names: Mapping[str, int], value: EnumArg, what: str) -> int:
    """The number of an enum value given by short name, full name or number.

    >>> enum_value(TRANSFORMS, "Normalize-Whitespace", "transform")
    6
    """
    if isinstance(value, int):
        return value
    key = value.strip().lower().replace("-", "_")
    for full_prefix in ("text_transform_", "batch_operation_", "image_format_", "task_priority_"):
        key = key.removeprefix(full_prefix)
    key = key.removeprefix("task_state_")
    if key not in names:
        raise ValueError(f"unknown {what} {value!r}; choose from {', '.join(names)}")
    return names[key]


class OptionArgs(TypedDict, total=False):
    """Keyword arguments every builder accepts; see :func:`options`."""

    max_attempts: int
    timeout: Seconds
    priority: EnumArg
    idempotency_key: str
    labels: Mapping[str, str]
    delay: Seconds
    run_at: dt.datetime


def _duration(value: Seconds) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    if isinstance(value, dt.timedelta):
        d.FromTimedelta(value)
    else:
        d.FromNanoseconds(round(value * 1e9))
    return d


def options(**kwargs: Unpack[OptionArgs]) -> tasks_pb2.TaskOptions:
    """TaskOptions from plain values.

    ``timeout`` and ``delay`` are seconds (or timedeltas); ``priority`` is high, normal
    or low; ``run_at`` is a datetime, local time when naive. Unset options take the task
    type's defaults.

    >>> options(timeout=2.5, priority="low", labels={"team": "web"}).timeout.nanos
    500000000
    """
    result = tasks_pb2.TaskOptions(
        max_attempts=kwargs.get("max_attempts", 0),
        idempotency_key=kwargs.get("idempotency_key", ""),
        labels=dict(kwargs.get("labels", {})),
    )
    if "priority" in kwargs:
        result.priority = enum_value(PRIORITIES, kwargs["priority"], "priority")  # type: ignore[assignment]
    if "timeout" in kwargs:
        result.timeout.CopyFrom(_duration(kwargs["timeout"]))
    if "delay" in kwargs:
        result.delay.CopyFrom(_duration(kwargs["delay"]))
    if "run_at" in kwargs:
        ts = timestamp_pb2.Timestamp()
        # astimezone() reads a naive datetime as local time, as a person typing one means.
        ts.FromDatetime(kwargs["run_at"].astimezone(dt.UTC))
        result.run_at.CopyFrom(ts)
    return result


def _request(opts: OptionArgs) -> tasks_pb2.SubmitTaskRequest:
    request = tasks_pb2.SubmitTaskRequest()
    if opts:
        request.options.CopyFrom(options(**opts))
    return request


def text_processing(
    text: str, transforms: Iterable[EnumArg] = (), top_words: int = 0, **opts: Unpack[OptionArgs]
) -> tasks_pb2.SubmitTaskRequest:
    """A text_processing request: statistics, top words and transforms of ``text``."""
    request = _request(opts)
    msg = request.text_processing
    msg.text = text
    msg.top_words = top_words
    msg.transforms.extend(enum_value(TRANSFORMS, t, "transform") for t in transforms)  # type: ignore[misc]
    return request


def ai_summarization(
    text: str, max_sentences: int = 0, **opts: Unpack[OptionArgs]
) -> tasks_pb2.SubmitTaskRequest:
    """An ai_summarization request: an extractive summary of at most ``max_sentences``."""
    request = _request(opts)
    request.ai_summarization.text = text
    request.ai_summarization.max_sentences = max_sentences
    return request


def batch_processing(
    items: Iterable[str], operation: EnumArg, chunk_size: int = 0, **opts: Unpack[OptionArgs]
) -> tasks_pb2.SubmitTaskRequest:
    """A batch_processing request: ``operation`` applied to every item, in chunks."""
    request = _request(opts)
    msg = request.batch_processing
    msg.items.extend(items)
    msg.operation = enum_value(BATCH_OPERATIONS, operation, "operation")  # type: ignore[assignment]
    msg.chunk_size = chunk_size
    return request


def resize(width: int, height: int) -> tasks_pb2.ImageOperation:
    """An image operation scaling to exactly width x height pixels."""
    return tasks_pb2.ImageOperation(resize=tasks_pb2.ImageResize(width=width, height=height))


def thumbnail(max_width: int, max_height: int) -> tasks_pb2.ImageOperation:
    """An image operation shrinking to fit in max_width x max_height, keeping the aspect."""
    return tasks_pb2.ImageOperation(
        thumbnail=tasks_pb2.ImageThumbnail(max_width=max_width, max_height=max_height)
    )


def grayscale() -> tasks_pb2.ImageOperation:
    """An image operation converting to shades of grey."""
    return tasks_pb2.ImageOperation(grayscale=tasks_pb2.ImageGrayscale())


def rotate(degrees: float) -> tasks_pb2.ImageOperation:
    """An image operation rotating counter-clockwise by ``degrees``."""
    return tasks_pb2.ImageOperation(rotate=tasks_pb2.ImageRotate(degrees=degrees))


def image_processing(
    image: bytes,
    operations: Iterable[tasks_pb2.ImageOperation] = (),
    output_format: EnumArg | None = None,
    **opts: Unpack[OptionArgs],
) -> tasks_pb2.SubmitTaskRequest:
    """An image_processing request: ``operations`` applied in order to the encoded image.

    >>> request = image_processing(b"...png bytes...", [thumbnail(64, 64), grayscale()], "webp")
    >>> len(request.image_processing.operations)
    2
    """
    request = _request(opts)
    msg = request.image_processing
    msg.image = image
    msg.operations.extend(operations)
    if output_format is not None:
        msg.output_format = enum_value(IMAGE_FORMATS, output_format, "image format")  # type: ignore[assignment]
    return request


def custom(
    task_type: str, payload: Mapping[str, Any] | None = None, **opts: Unpack[OptionArgs]
) -> tasks_pb2.SubmitTaskRequest:
    """A request for a user-registered task type; ``payload`` must be JSON-like (a
    ``conveyor.jsonlike.NotJsonLike``, a ValueError, says where it is not). It travels as
    JSON text, so integers up to 64 bits arrive exactly.

    >>> custom("send_email", {"to": "a@example.com", "id": 2**53 + 1}).custom.json
    '{"to":"a@example.com","id":9007199254740993}'
    """
    request = _request(opts)
    request.custom.type = task_type
    request.custom.json = jsonlike.dumps(payload or {})
    return request


def custom_result(result: tasks_pb2.TaskResult) -> dict[str, Any]:
    """A custom task's result as the dict its handler returned, integers exact (a result
    too large for one message comes abridged: pass ``client.result(task_id)`` then).

    >>> done = tasks_pb2.TaskResult(custom=tasks_pb2.CustomTaskResult(json='{"n": 12}'))
    >>> custom_result(done)
    {'n': 12}
    """
    if result.WhichOneof("result") != "custom":
        raise ValueError("not the result of a custom task type")
    return jsonlike.loads(result.custom.json or "{}")
