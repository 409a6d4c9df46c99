"""Opaque, URL-safe page tokens for ListTasks' keyset pagination (newest first)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from dataclasses import dataclass

from conveyor.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

_FORMAT = 1  # bump when the token layout changes, so old tokens fail cleanly
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Cursor:
    """The last task of a page: the next page starts strictly after it in (time, id) order."""

    create_time: dt.datetime
    task_id: str


def page_size_of(requested: int) -> int:
    """The page size to use: 0 (or less) means the default, and it is capped at the maximum."""
    if requested <= 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def encode_token(cursor: Cursor) -> str:
    """The token naming the page after ``cursor``."""
    micros = (cursor.create_time - _EPOCH) // dt.timedelta(microseconds=1)
    raw = json.dumps([_FORMAT, micros, cursor.task_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_token(token: str) -> Cursor | None:
    """The cursor of a token (None for the empty token of the first page).

    Raises InvalidArgument naming ``page_token`` when the token was not made by
    :func:`encode_token`.
    """
    if not token:
        return None
    try:
        padded = token.encode("ascii") + b"=" * (-len(token) % 4)
        fmt, micros, task_id = json.loads(base64.b64decode(padded, altchars=b"-_", validate=True))
        if fmt != _FORMAT or type(micros) is not int or not isinstance(task_id, str):
            raise ValueError("unexpected token layout")
        if not 0 < len(task_id) <= 26:
            raise ValueError("bad task id")
        return Cursor(_EPOCH + dt.timedelta(microseconds=micros), task_id)
    except (ValueError, TypeError, OverflowError, binascii.Error) as exc:
        raise InvalidArgument.for_fields(
            [FieldViolation("page_token", "not a page token returned by ListTasks")]
        ) from exc
