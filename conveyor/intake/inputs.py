"""Checks of a task's input, one function per input type of the submit request's oneof.

Besides each field's own limits, an input is refused when the result its handler would
make could not fit in one message (``max_message_bytes``): better now, with the field
named, than as a failed task after it ran.
"""

from __future__ import annotations

import math

from google.protobuf import struct_pb2

from conveyor import jsonlike
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.config import Limits
from conveyor.intake.checks import (
    Collector,
    check_at_most,
    check_count,
    check_enum,
    check_type_name,
    quote,
    utf8_size,
)
from conveyor.jsonlike import MAX_DEPTH
from conveyor.tasks import BUILTIN_TYPES

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
MAX_PAYLOAD_DEPTH = MAX_DEPTH
INPUT_FIELDS = (*BUILTIN_TYPES, "custom")
_IMAGE_OPERATIONS = ("resize", "thumbnail", "grayscale", "rotate")

_TRANSFORMS: dict[str, int] = dict(tasks_pb2.TextTransform.items())
_BATCH_OPERATIONS: dict[str, int] = dict(tasks_pb2.BatchOperation.items())
_IMAGE_FORMATS: dict[str, int] = dict(tasks_pb2.ImageFormat.items())
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


def _check_text(c: Collector, field: str, text: str, limits: Limits) -> None:
    if not text:
        c.add(field, "must not be empty")
    elif (size := utf8_size(text)) > limits.max_text_bytes:
        c.add(field, f"must be at most {limits.max_text_bytes} bytes of UTF-8 (got {size})")


def _check_text_processing(
    c: Collector, msg: tasks_pb2.TextProcessingInput, limits: Limits
) -> None:
    _check_text(c, "text", msg.text, limits)
    check_at_most(c, "top_words", msg.top_words, MAX_TOP_WORDS)
    if len(msg.transforms) > MAX_TRANSFORMS:
        c.add("transforms", f"at most {MAX_TRANSFORMS} transforms (got {len(msg.transforms)})")
    first: dict[int, int] = {}
    for i, transform in enumerate(msg.transforms[:MAX_TRANSFORMS]):
        check_enum(c, f"transforms[{i}]", _TRANSFORMS, transform, allow_zero=False)
        if transform in first and len(msg.transforms) <= MAX_TRANSFORMS:
            # Each output is the whole text again: repeats would only multiply the result.
            name = _NAMES.get(transform, str(transform))
            c.add(f"transforms[{i}]", f"{name} is already asked for at [{first[transform]}]")
        first.setdefault(transform, i)
    size = utf8_size(msg.text)
    if size > limits.max_text_bytes:
        return  # reported above
    if not msg.text.isascii():
        growth = sum(_TRANSFORM_GROWTH.get(t, 1.0) for t in first)
    else:
        growth = len(first)
    # The top words, at most the text once, come with the transforms' outputs.
    _check_result_size(c, "text", int(size * (1 + growth)), limits, "fewer transforms")


def _check_ai_summarization(
    c: Collector, msg: tasks_pb2.AiSummarizationInput, limits: Limits
) -> None:
    _check_text(c, "text", msg.text, limits)
    check_at_most(c, "max_sentences", msg.max_sentences, MAX_SENTENCES)


def _check_batch_processing(
    c: Collector, msg: tasks_pb2.BatchProcessingInput, limits: Limits
) -> None:
    if check_count(c, "items", len(msg.items), limits.max_batch_items, "item", "items"):
        total = result = 0
        for i, item in enumerate(msg.items):
            size = utf8_size(item)
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
    check_enum(c, "operation", _BATCH_OPERATIONS, msg.operation, allow_zero=False)
    check_at_most(c, "chunk_size", msg.chunk_size, MAX_CHUNK_SIZE)


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
    c: Collector, field: str, estimate: int, limits: Limits, remedy: str
) -> None:
    """Reports an input whose result could outgrow a message."""
    budget = limits.max_message_bytes - RESULT_HEADROOM
    if estimate > budget:
        c.add(
            field,
            f"its result could take {estimate} bytes, more than the {budget} a result may "
            f"have; ask for {remedy}",
        )


def _check_side(c: Collector, field: str, value: int) -> None:
    if not 1 <= value <= MAX_IMAGE_SIDE:
        c.add(field, f"must be between 1 and {MAX_IMAGE_SIDE} pixels (got {value})")


def _check_image_operation(c: Collector, op: tasks_pb2.ImageOperation) -> None:
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
    c: Collector, msg: tasks_pb2.ImageProcessingInput, limits: Limits
) -> None:
    if not msg.image:
        c.add("image", "must not be empty")
    elif len(msg.image) > limits.max_image_bytes:
        c.add("image", f"must be at most {limits.max_image_bytes} bytes (got {len(msg.image)})")
    if len(msg.operations) > MAX_IMAGE_OPERATIONS:
        c.add("operations", f"at most {MAX_IMAGE_OPERATIONS} operations")
    for i, op in enumerate(msg.operations[:MAX_IMAGE_OPERATIONS]):
        _check_image_operation(c.child(f"operations[{i}]."), op)
    check_enum(c, "output_format", _IMAGE_FORMATS, msg.output_format, allow_zero=True)


def _check_payload_value(c: Collector, field: str, value: struct_pb2.Value, depth: int) -> None:
    """Reports what JSON cannot carry (NaN, infinities) and nesting a handler cannot walk."""
    if depth > MAX_PAYLOAD_DEPTH:
        c.add(field, f"must not be nested deeper than {MAX_PAYLOAD_DEPTH} levels")
        return
    kind = value.WhichOneof("kind")
    if kind == "number_value" and not math.isfinite(value.number_value):
        c.add(field, "must be a finite number")
    elif kind == "struct_value":
        for key, item in value.struct_value.fields.items():
            _check_payload_value(c, f"{field}[{quote(key)}]", item, depth + 1)
    elif kind == "list_value":
        for i, item in enumerate(value.list_value.values):
            _check_payload_value(c, f"{field}[{i}]", item, depth + 1)


def _check_custom(c: Collector, msg: tasks_pb2.CustomTaskInput, limits: Limits) -> None:
    if not msg.type:
        c.add("type", "must not be empty")
    elif msg.type in BUILTIN_TYPES:
        c.add("type", f"{msg.type} is built in: set the {msg.type} field instead of custom")
    else:
        check_type_name(c, "type", msg.type)
    if msg.json:
        _check_custom_json(c, msg, limits)
        return
    size = msg.payload.ByteSize()
    if size > limits.max_text_bytes:
        c.add("payload", f"must be at most {limits.max_text_bytes} bytes encoded (got {size})")
        return
    for key, value in msg.payload.fields.items():
        _check_payload_value(c, f"payload[{quote(key)}]", value, 1)


def _check_custom_json(c: Collector, msg: tasks_pb2.CustomTaskInput, limits: Limits) -> None:
    """The arguments as JSON text: one JSON object the handler's decoder takes back exactly."""
    if msg.HasField("payload"):
        c.add("payload", "set payload or json, not both")
    size = utf8_size(msg.json)
    if size > limits.max_text_bytes:
        c.add("json", f"must be at most {limits.max_text_bytes} bytes (got {size})")
        return
    try:
        jsonlike.loads(msg.json)
    except jsonlike.NotJsonLike as exc:
        c.add("json", str(exc))


def check_input(
    c: Collector, request: tasks_pb2.SubmitTaskRequest | tasks_pb2.TaskInput, limits: Limits
) -> None:
    """Reports a missing input and every problem of the one that is set: a request's, or a
    submitted task's (the same ``input`` oneof, field by field)."""
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
