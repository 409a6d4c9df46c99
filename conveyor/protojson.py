"""Protobuf's canonical JSON mapping as dicts, exactly ``json_format.MessageToDict``'s
output, at a fraction of its cost.

``MessageToDict`` spends most of its time in per-field Python bookkeeping, which made up
most of what a Server-Sent Event costs the gateway (docs/performance.md). Here each message
type gets a plan once (its fields' JSON names and how each value is written), and a
message is written from ``ListFields`` (only the fields that are set, as MessageToDict
without ``always_print_fields_with_no_presence``). Whatever the plan does not cover
itself (``float`` fields, the well-known types but Timestamp and Duration, unknown enum
numbers) is handed to ``MessageToDict``, message by message, so the output never differs
(tests/conveyor/test_protojson.py compares both).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

Writer = Callable[[Any], Any]
_MIN_SECONDS = -62_135_596_800
"""0001-01-01T00:00:00Z, the earliest Timestamp JSON can write."""
_MAX_SECONDS = 253_402_300_799
"""9999-12-31T23:59:59Z, the latest."""
_PLANS: dict[str, Callable[[Message], dict[str, Any]]] = {}
_HEADS: dict[int, str] = {}
"""Timestamps' text to the second, by seconds: the updates of a burst share a few seconds,
and formatting them was about a third of a task's JSON."""
_HEADS_KEPT = 4096
_STRINGS_64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}
_AS_IS = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_BOOL,
    FieldDescriptor.TYPE_STRING,
}
_WRITTEN_AS_STRINGS = {"google.protobuf.Timestamp", "google.protobuf.Duration"}


def to_dict(message: Message) -> dict[str, Any]:
    """``json_format.MessageToDict(message)``, the same dict."""
    descriptor = message.DESCRIPTOR
    plan = _PLANS.get(descriptor.full_name)
    if plan is None:
        plan = _PLANS[descriptor.full_name] = _plan(descriptor)  # type: ignore[arg-type]
    return plan(message)


def _by_json_format(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message)


def _plan(descriptor: Descriptor) -> Callable[[Message], dict[str, Any]]:
    if descriptor.full_name.startswith("google.protobuf.") or any(
        f.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)
        for f in descriptor.fields
    ):
        return _by_json_format
    writers: dict[int, tuple[str, Writer]] = {}
    for field in descriptor.fields:
        writers[field.number] = (field.json_name, _field_writer(field))

    def write(message: Message) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field, value in message.ListFields():
            name, writer = writers[field.number]
            out[name] = writer(value)
        return out

    return write


def _field_writer(field: FieldDescriptor) -> Writer:
    message_type = field.message_type
    if message_type is not None and message_type.GetOptions().map_entry:
        key_writer = _map_key(message_type.fields_by_name["key"])
        value_writer = _single(message_type.fields_by_name["value"])
        return lambda entries: {key_writer(k): value_writer(v) for k, v in entries.items()}
    single = _single(field)
    if field.is_repeated:
        return lambda values: [single(v) for v in values]
    return single


def _map_key(field: FieldDescriptor) -> Writer:
    if field.type == FieldDescriptor.TYPE_BOOL:
        return lambda key: "true" if key else "false"
    return str


def _single(field: FieldDescriptor) -> Writer:
    if field.type in _AS_IS:
        return _same
    if field.type in _STRINGS_64:
        return str
    if field.type == FieldDescriptor.TYPE_BYTES:
        return lambda data: base64.b64encode(data).decode("ascii")
    if field.type == FieldDescriptor.TYPE_ENUM and field.enum_type is not None:
        return _enum(field.enum_type)
    if field.message_type is not None:
        if field.message_type.full_name == "google.protobuf.Timestamp":
            return timestamp
        if field.message_type.full_name in _WRITTEN_AS_STRINGS:
            return lambda value: value.ToJsonString()
        return to_dict
    return lambda value: json_format.MessageToDict(value)  # pragma: no cover


def timestamp(value: Any) -> str:
    """``Timestamp.ToJsonString()``: RFC 3339 in UTC with 0, 3, 6 or 9 digits of
    fraction; formatted here, as the library's Python is the slowest part of a task's JSON."""
    seconds, nanos = value.seconds, value.nanos
    if not (_MIN_SECONDS <= seconds <= _MAX_SECONDS and 0 <= nanos < 1_000_000_000):
        text: str = value.ToJsonString()  # out of range: the library's error
        return text
    head = _HEADS.get(seconds)
    if head is None:
        head = "%04d-%02d-%02dT%02d:%02d:%02d" % time.gmtime(seconds)[:6]  # noqa: UP031
        if len(_HEADS) >= _HEADS_KEPT:
            _HEADS.clear()
        _HEADS[seconds] = head
    if nanos == 0:
        return head + "Z"
    if nanos % 1_000_000 == 0:
        return "%s.%03dZ" % (head, nanos // 1_000_000)  # noqa: UP031
    if nanos % 1_000 == 0:
        return "%s.%06dZ" % (head, nanos // 1_000)  # noqa: UP031
    return "%s.%09dZ" % (head, nanos)  # noqa: UP031


def _same(value: Any) -> Any:
    return value


def _enum(enum: EnumDescriptor) -> Writer:
    names = {value.number: value.name for value in enum.values}
    return lambda number: names.get(number, number)
