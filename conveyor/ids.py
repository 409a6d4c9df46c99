"""Task ids: 26 characters, unique, and sortable by creation time (ULID layout)."""

from __future__ import annotations

import base64
import os
import re
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_TASK_ID = re.compile("[0-9a-hjkmnp-tv-z]{26}")  # the same alphabet: i, l, o and u left out


_DIGITS_MASK = 2**130 - 1
_FROM_BASE32 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())


def new_task_id(now_ms: int | None = None) -> str:
    """A new id: 48 bits of milliseconds since the epoch, then 80 random bits."""
    millis = int(time.time() * 1000) if now_ms is None else now_ms
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    # The low 130 bits as 26 base-32 digits: shifted by 6 to fill 17 bytes, whose first
    # 26 digits in RFC 4648 base 32 are those, then translated to the alphabet (a few C
    # calls instead of a Python loop per digit; an id is made for every task).
    digits = base64.b32encode(((value & _DIGITS_MASK) << 6).to_bytes(17, "big"))[:26]
    return digits.translate(_FROM_BASE32).decode()


def is_task_id(text: str) -> bool:
    """True when text has the shape of a task id."""
    return _TASK_ID.fullmatch(text) is not None
