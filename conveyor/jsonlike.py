"""JSON-like data as JSON text, checked so that every reader can take it back exactly.

A custom task's arguments and result travel as the text of a JSON object, so an integer
keeps every digit in every language (a ``google.protobuf.Struct`` would make it a double).
Python accepts more than JSON and more than other languages' decoders read back: NaN and
infinities (not JSON), integers past 64 bits (Go's and Java's decoders refuse them),
non-string keys, and nesting deeper than a handler should walk. :func:`dumps` refuses all of
these, naming where the offending value is; :func:`loads` refuses the same in text.

>>> dumps({"count": 2**53 + 1, "tags": ["a", "b"]})
'{"count":9007199254740993,"tags":["a","b"]}'
>>> loads('{"count": 9007199254740993}')["count"] == 2**53 + 1
True
>>> dumps({"ratio": float("nan")})
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

from google.protobuf.message import Message

MAX_DEPTH = 32
"""Levels of dicts and lists below the top-level dict."""
MIN_INTEGER = -(2**63)
MAX_INTEGER = 2**64 - 1
"""Integers from int64's least to uint64's greatest: what 64-bit decoders take back."""
MessageT = TypeVar("MessageT", bound=Message)
_SURROGATE = re.compile("[\ud800-\udfff]")


class NotJsonLike(ValueError):
    """Raised when data cannot be stored as JSON; says where and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []  # innermost first, while the error rises

    def field(self, root: str) -> str:
        """Where the offending value is, below ``root``: ``payload["a"][1]``."""
        return root + "".join(self.path[::-1])

    def __str__(self) -> str:
        path = self.path[::-1]
        if len(path) > 6:
            path = [*path[:3], "...", *path[-2:]]
        return f"{''.join(path) or '(top level)'}: {self.reason}"


def dumps(data: Mapping[str, Any]) -> str:
    """``data`` as compact JSON text; raises NotJsonLike naming the first value that JSON
    (or a 64-bit decoder) cannot hold."""
    if not isinstance(data, Mapping):
        raise NotJsonLike(f"a {type(data).__name__} is not a JSON object (use a dict)")
    _check_object(data, 1)
    return _ENCODER.encode(data)


def loads(text: str) -> dict[str, Any]:
    """The JSON object ``text`` holds, integers exact; raises NotJsonLike for text that is
    not a JSON object or holds what :func:`dumps` refuses."""
    try:
        if isinstance(text, str) and not text.startswith("\ufeff"):
            data = _DECODER.decode(text)
        else:
            data = json.loads(text, parse_constant=_refuse_constant)
    except NotJsonLike:
        raise
    except (ValueError, RecursionError) as exc:
        raise NotJsonLike(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise NotJsonLike(f"must be a JSON object, not {type(data).__name__}")
    _check_object(data, 1)
    return data


def _refuse_constant(name: str) -> Any:
    raise NotJsonLike(f"{name} is not a JSON number (NaN and infinities are not)")


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
"""Made once: ``json.dumps``/``loads`` with options build a new one on every call."""


def valid_text(text: str) -> str:
    """The text with what UTF-8 cannot encode (lone surrogates) replaced by U+FFFD: a protobuf
    string field refuses such text, and the message carrying it could not be sent."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def _check_object(data: Mapping[Any, Any], depth: int) -> None:
    for key, item in data.items():
        if not isinstance(key, str):
            raise NotJsonLike(f"key {key!r} is of type {type(key).__name__}, not a string")
        try:
            if _SURROGATE.search(key):
                raise NotJsonLike(f"key {key!r} is not valid UTF-8")
            _check(item, depth)
        except NotJsonLike as exc:
            exc.path.append(f"[{json.dumps(key[:64], ensure_ascii=False)}]")
            raise


def _check(item: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise NotJsonLike(f"nested deeper than {MAX_DEPTH} levels of dicts and lists")
    if isinstance(item, Mapping):
        _check_object(item, depth + 1)
    elif isinstance(item, list | tuple):
        for i, element in enumerate(item):
            try:
                _check(element, depth + 1)
            except NotJsonLike as exc:
                exc.path.append(f"[{i}]")
                raise
    else:
        _check_scalar(item)


def _check_scalar(item: Any) -> None:
    if item is None or isinstance(item, bool):
        return
    if isinstance(item, int):
        if not MIN_INTEGER <= item <= MAX_INTEGER:
            raise NotJsonLike(
                f"integer {_digits(item)} is beyond 64 bits (-2**63..2**64-1), which other "
                "languages' decoders refuse; store it as a string"
            )
    elif isinstance(item, float):
        if not math.isfinite(item):
            raise NotJsonLike(f"{item} is not a JSON number (NaN and infinities are not)")
    elif isinstance(item, str):
        if _SURROGATE.search(item):
            raise NotJsonLike("the string is not valid UTF-8 (lone surrogates)")
    else:
        raise NotJsonLike(
            f"a value of type {type(item).__name__} is not JSON "
            "(use dict, list, str, int, float, bool or None)"
        )


def _digits(number: int) -> str:
    """The integer, shortened past 40 digits (str() refuses past 4300)."""
    if number.bit_length() > 132:
        return f"of {number.bit_length()} bits"
    return str(number)


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
