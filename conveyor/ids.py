"""Task ids: 26 characters, unique, and sortable by creation time (ULID layout)."""

from __future__ import annotations

import os
import re
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_TASK_ID = re.compile("[0-9a-hjkmnp-tv-z]{26}")  # the same alphabet: i, l, o and u left out


_PAIRS = [first + second for first in _ALPHABET for second in _ALPHABET]
_SHIFTS = range(120, -1, -10)


def new_task_id(now_ms: int | None = None) -> str:
    """A new id: 48 bits of milliseconds since the epoch, then 80 random bits."""
    millis = int(time.time() * 1000) if now_ms is None else now_ms
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    # The low 130 bits as 26 digits, two at a time (13 lookups rather than 26 shifts: an
    # id is made for every task).
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


def is_task_id(text: str) -> bool:
    """True when text has the shape of a task id."""
    return _TASK_ID.fullmatch(text) is not None
