"""JSON-like data as a protobuf ``Struct``, checked so that every reader can take it back.

A custom task's payload and result travel as ``google.protobuf.Struct``. Protobuf accepts
more than JSON and more than its own parsers read back: NaN and infinities (which the JSON
mapping refuses to print), integers past 2**53 (silently rounded to a double), and nesting
deeper than the parsers' limit of 100 messages (an event that no store can read).
:func:`to_struct` refuses all of these, naming where the offending value is.

>>> to_struct({"count": 3, "tags": ["a", "b"]}).fields["count"].number_value
3.0
>>> to_struct({"ratio": float("nan")})
Traceback (most recent call last):
...
conveyor.jsonlike.NotJsonLike: ["ratio"]: nan is not a JSON number (NaN and infinities are not)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from google.protobuf import struct_pb2
from google.protobuf.message import Message

MAX_DEPTH = 32
"""Levels of dicts and lists below the top-level dict. A task's Struct sits five messages
deep in the deepest envelope it travels in (a submitted event, the store's watch call),
each level costs up to three, and parsers stop at 100."""
MAX_EXACT_INTEGER = 2**53
"""Larger integers are not kept exactly: a Struct number is a double."""
MessageT = TypeVar("MessageT", bound=Message)
_SURROGATE = re.compile("[\ud800-\udfff]")


class NotJsonLike(ValueError):
    """Raised when data cannot be stored as JSON; says where and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []  # innermost first, while the error rises

    def __str__(self) -> str:
        path = self.path[::-1]
        if len(path) > 6:
            path = [*path[:3], "...", *path[-2:]]
        return f"{''.join(path) or '(top level)'}: {self.reason}"


def to_struct(data: Mapping[str, Any]) -> struct_pb2.Struct:
    """A Struct holding ``data``; raises NotJsonLike naming the first value that JSON (or
    a protobuf parser) cannot hold."""
    struct = struct_pb2.Struct()
    _fill_struct(struct, data, 1)
    return struct


def valid_text(text: str) -> str:
    """The text with what UTF-8 cannot encode (lone surrogates) replaced by U+FFFD: a protobuf
    string field refuses such text, and the message carrying it could not be sent."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def _fill_struct(struct: struct_pb2.Struct, data: Mapping[Any, Any], depth: int) -> None:
    fields = struct.fields
    for key, item in data.items():
        if not isinstance(key, str):
            raise NotJsonLike(f"key {key!r} is of type {type(key).__name__}, not a string")
        try:
            value = fields[key]
        except ValueError as exc:  # lone surrogates
            raise NotJsonLike(f"key {key!r} is not valid UTF-8") from exc
        try:
            _set(value, item, depth)
        except NotJsonLike as exc:
            exc.path.append(f"[{json.dumps(key[:64], ensure_ascii=False)}]")
            raise


def _set(value: struct_pb2.Value, item: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise NotJsonLike(f"nested deeper than {MAX_DEPTH} levels of dicts and lists")
    if isinstance(item, Mapping):
        value.struct_value.SetInParent()
        _fill_struct(value.struct_value, item, depth + 1)
    elif isinstance(item, list | tuple):
        values = value.list_value.values
        value.list_value.SetInParent()
        for i, element in enumerate(item):
            try:
                _set(values.add(), element, depth + 1)
            except NotJsonLike as exc:
                exc.path.append(f"[{i}]")
                raise
    else:
        _set_scalar(value, item)


def _set_scalar(value: struct_pb2.Value, item: Any) -> None:
    if item is None:
        value.null_value = struct_pb2.NULL_VALUE
    elif isinstance(item, bool):
        value.bool_value = item
    elif isinstance(item, int):
        if abs(item) > MAX_EXACT_INTEGER:
            raise NotJsonLike(
                f"integer {item} is beyond ±2**53 and would not be kept exactly; "
                "store it as a string"
            )
        value.number_value = item
    elif isinstance(item, float):
        if not math.isfinite(item):
            raise NotJsonLike(f"{item} is not a JSON number (NaN and infinities are not)")
        value.number_value = item
    elif isinstance(item, str):
        try:
            value.string_value = item
        except ValueError as exc:
            raise NotJsonLike("the string is not valid UTF-8 (lone surrogates)") from exc
    else:
        raise NotJsonLike(
            f"a value of type {type(item).__name__} is not JSON "
            "(use dict, list, str, int, float, bool or None)"
        )


_JSON_SPELLINGS = {math.inf: "Infinity", -math.inf: "-Infinity"}


def printable_copy(message: MessageT) -> MessageT:
    """A copy of the message whose Struct numbers that JSON cannot hold (NaN, infinities;
    stored by an older worker) are strings spelled as the proto3 JSON mapping spells such
    doubles: ``json_format`` refuses to print the message otherwise."""
    copy = type(message)()
    copy.CopyFrom(message)
    _replace_non_finite(copy)
    return copy


def _replace_non_finite(message: Message) -> None:
    if message.DESCRIPTOR.full_name == "google.protobuf.Value":
        number = message.number_value  # type: ignore[attr-defined]
        if message.WhichOneof("kind") == "number_value" and not math.isfinite(number):
            message.string_value = _JSON_SPELLINGS.get(number, "NaN")  # type: ignore[attr-defined]
            return
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is not None:
                for item in value.values():
                    _replace_non_finite(item)
        elif field.is_repeated:
            for item in value:
                _replace_non_finite(item)
        else:
            _replace_non_finite(value)
