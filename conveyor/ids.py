"""Task ids: 26 characters, unique, and sortable by creation time (ULID layout)."""

from __future__ import annotations

import os
import re
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_TASK_ID = re.compile("[0-9a-hjkmnp-tv-z]{26}")  # the same alphabet: i, l, o and u left out


def new_task_id(now_ms: int | None = None) -> str:
    """A new id: 48 bits of milliseconds since the epoch, then 80 random bits."""
    millis = int(time.time() * 1000) if now_ms is None else now_ms
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def is_task_id(text: str) -> bool:
    """True when text has the shape of a task id."""
    return _TASK_ID.fullmatch(text) is not None
