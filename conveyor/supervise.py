"""Keeping ``conveyor dev``'s processes running: a child that exits is started again after
a backoff that doubles (capped) while it keeps failing soon after each start, and one that
fails that way too often in a row is left stopped; the others keep serving throughout."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TextIO, TypeVar

BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0
STABLE_AFTER = 10.0
"""A child that ran this long before it exited had come up and served: its backoff starts
afresh (a worker killed now and then by a poison task keeps being restarted at once)."""
GIVE_UP_AFTER = 6
"""Quick failures in a row (about a minute of backoff) after which a child stays stopped."""


class Supervised(Protocol):
    """A child process as ``conveyor dev`` keeps it."""

    name: str
    process: subprocess.Popen[bytes] | None


C = TypeVar("C", bound=Supervised)


@dataclass
class _Record:
    started: float
    failures: int = 0
    restart_at: float | None = None
    given_up: bool = False


def describe_exit(code: int) -> str:
    """``code 3`` or ``killed by SIGKILL``, from a Popen return code."""
    if code >= 0:
        return f"code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


class Supervisor(Generic[C]):
    """Starts children and restarts the ones that exit; call ``check()`` periodically."""

    def __init__(
        self,
        start: Callable[[C], None],
        clock: Callable[[], float] = time.monotonic,
        out: TextIO | None = None,
    ) -> None:
        self._start = start
        self._clock = clock
        self._out = out
        self._records: dict[str, _Record] = {}

    def start(self, child: C) -> None:
        """Starts ``child`` and keeps it running from now on."""
        self._start(child)
        record = self._records.get(child.name)
        if record is None:
            self._records[child.name] = _Record(self._clock())
        else:
            record.started = self._clock()
            record.restart_at = None

    def given_up(self) -> list[str]:
        """The children left stopped after failing too often in a row."""
        return [name for name, record in self._records.items() if record.given_up]

    def check(self, children: Sequence[C]) -> None:
        """Notices children that exited and restarts those whose backoff is over."""
        now = self._clock()
        for child in children:
            record = self._records.get(child.name)
            if record is None or record.given_up or child.process is None:
                continue
            code = child.process.poll()
            if code is None:
                continue
            if record.restart_at is None:
                self._exited(child.name, record, code, now)
            elif now >= record.restart_at:
                self._say(f"restarting {child.name}")
                self.start(child)

    def _exited(self, name: str, record: _Record, code: int, now: float) -> None:
        if now - record.started >= STABLE_AFTER:
            record.failures = 0
        record.failures += 1
        if record.failures >= GIVE_UP_AFTER:
            record.given_up = True
            self._say(
                f"{name} exited ({describe_exit(code)}), failing {record.failures} times in a "
                "row soon after starting; not restarting it (the rest keep running; "
                "Ctrl-C stops everything)"
            )
            return
        delay = min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** (record.failures - 1))
        record.restart_at = now + delay
        self._say(f"{name} exited ({describe_exit(code)}); restarting it in {delay:g}s")

    def _say(self, message: str) -> None:
        print(f"conveyor dev: {message}", file=self._out or sys.stderr, flush=True)
