"""What a failed attempt's ``TaskError`` carries at most, and its traceback: formatted
where the handler raised (in the child process for a CPU-bound handler), bounded, valid
UTF-8. The worker keeps to these bounds and the store refuses an event past them.

The bound keeps the end of a long traceback, where the innermost frames and the
exception are, and each piece (one frame, or the exception's line) is shortened in its
middle first, so an exception with a megabyte message still shows its frames.
"""

from __future__ import annotations

import contextlib
import traceback
from types import TracebackType

from conveyor.jsonlike import valid_text

MAX_ERROR_CHARS = 4000
"""The most characters of a TaskError's type and of its message."""
MAX_TRACEBACK_BYTES = 16 * 1024
"""The most UTF-8 bytes of a TaskError's traceback."""
MAX_PIECE_CHARS = 2048
"""The most characters of one frame or of the exception's line kept in a traceback."""
ATTRIBUTE = "conveyor_traceback"
"""Where a child process leaves the traceback it formatted on the exception it raises
(kept in the exception's ``__dict__``, which pickling carries to the worker)."""
HANDLER_CALLER = "worker.invoke"
"""The module whose frame calls a handler: a traceback starts after its last frame (the
worker's runner and middleware above it left out), or whole when nothing follows it
(an error of the worker's own)."""
_MARKER_BYTES = 96
"""Room kept for the line saying how much was cut."""


def remember(error: BaseException) -> None:
    """Formats ``error``'s traceback now, where its frames are (a child process), and
    keeps it on the exception for :func:`traceback_of` in the worker."""
    with contextlib.suppress(Exception):  # one refusing attributes keeps the worker's view
        setattr(error, ATTRIBUTE, formatted(error))


def traceback_of(error: BaseException) -> str:
    """The bounded traceback of ``error``: the one a child process kept on it, or its own."""
    kept = getattr(error, ATTRIBUTE, None)
    if isinstance(kept, str):
        return bounded(kept)
    return formatted(error)


def formatted(error: BaseException) -> str:
    """``traceback.format_exception(error)`` from the handler's frame on, each piece
    shortened, then bounded."""
    try:
        pieces = traceback.format_exception(type(error), error, _from_handler(error.__traceback__))
    except Exception:
        return f"(the traceback of a {type(error).__name__} could not be formatted)\n"
    return bounded("".join(_shortened(piece) for piece in pieces))


def _from_handler(tb: TracebackType | None) -> TracebackType | None:
    start = tb
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__") == HANDLER_CALLER and tb.tb_next is not None:
            start = tb.tb_next
        tb = tb.tb_next
    return start


def _shortened(piece: str) -> str:
    if len(piece) <= MAX_PIECE_CHARS:
        return piece
    half = MAX_PIECE_CHARS // 2
    cut = len(piece) - 2 * half
    return f"{piece[:half]}\n[... {cut} characters cut ...]\n{piece[-half:]}"


def bounded(text: str) -> str:
    """The text as valid UTF-8 of at most MAX_TRACEBACK_BYTES: its end, after a line
    saying how many bytes of its start were cut."""
    data = valid_text(text).encode("utf-8")
    if len(data) <= MAX_TRACEBACK_BYTES:
        return data.decode("utf-8")
    tail = data[-(MAX_TRACEBACK_BYTES - _MARKER_BYTES) :]
    start = tail.find(b"\n")
    if 0 <= start < 1024:  # start at a whole line when one begins near
        tail = tail[start + 1 :]
    cut = len(data) - len(tail)
    # A cut through a character leaves continuation bytes first: "ignore" drops them.
    return f"[... the first {cut} bytes of this traceback were cut ...]\n" + tail.decode(
        "utf-8", errors="ignore"
    )
