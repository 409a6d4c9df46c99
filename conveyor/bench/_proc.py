"""What ``/proc`` says about the processes of the system under test: what each one is,
its resident memory, and the CPU it used.

Everything is read from ``/proc`` (Linux), so no extra dependency is needed; it works for
processes of the same machine only.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from conveyor.bench._results import Metric, ScenarioResult
from conveyor.bench._tracking import BenchError

_ROLES = ("worker", "store", "gateway", "scheduler")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_UTIME = 11
"""Index of utime among the fields after the command name (stat(5) field 14; stime follows)."""
BENCH = "bench client"
"""The label of this process's own CPU: the load generator shares the machine."""
LISTED = "all listed processes"
MACHINE = "whole machine"


def rss_mb(pid: int) -> float:
    """The resident set size of a process in MiB; raises BenchError if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError as exc:
        raise BenchError(f"cannot read the memory of process {pid}: {exc.strerror}") from None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0  # kB
    raise BenchError(f"process {pid} reports no VmRSS (a kernel thread or a zombie?)")


def role(pid: int) -> str:
    """What the process is, from its command line: worker, store, ... or its name."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "process"
    words = [a.decode(errors="replace") for a in argv if a]
    for name in _ROLES:
        if any(words[i] == "-m" and words[i + 1] == name for i in range(len(words) - 1)):
            return name
    return Path(words[0]).name if words else "process"


def parse_stat_cpu(stat: str) -> float:
    """User plus system CPU seconds of every thread, from the text of ``/proc/<pid>/stat``.

    The command name (field 2) may hold spaces and parentheses, so the fields are counted
    from its last closing parenthesis.
    """
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[_UTIME]) + int(fields[_UTIME + 1])) / _CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) the process has used; raises BenchError if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError as exc:
        raise BenchError(f"cannot read the CPU time of process {pid}: {exc.strerror}") from None
    return parse_stat_cpu(stat)


def machine_cpu_seconds() -> float:
    """CPU seconds every CPU of the machine has spent busy (not idle, not waiting on I/O)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / _CLOCK_TICKS


def labels(pids: Sequence[int]) -> dict[int, str]:
    """Each process's role, with its pid where two share one (two workers)."""
    roles = {pid: role(pid) for pid in pids}
    twice = {name for name, n in Counter(roles.values()).items() if n > 1}
    return {pid: f"{name}[{pid}]" if name in twice else name for pid, name in roles.items()}


def _snapshot(pids: Sequence[int]) -> dict[int, float | None]:
    found: dict[int, float | None] = {}
    for pid in pids:
        try:
            found[pid] = cpu_seconds(pid)
        except BenchError:
            found[pid] = None
    return found


@dataclass
class CpuMeter:
    """CPU used by the given processes, this one and the whole machine over a window."""

    pids: tuple[int, ...]
    names: dict[int, str]
    start: dict[int, float | None]
    bench_start: float
    machine_start: float
    end: dict[int, float | None] | None = None
    bench_end: float = 0.0
    machine_end: float = 0.0

    @staticmethod
    def begin(pids: Sequence[int]) -> CpuMeter:
        """Starts measuring; raises BenchError if a process cannot be read."""
        start = {pid: cpu_seconds(pid) for pid in pids}
        return CpuMeter(
            tuple(pids),
            labels(pids),
            dict(start),
            _own_cpu(),
            machine_cpu_seconds(),
        )

    def stop(self) -> None:
        """Ends the window (a process gone by then is left out of the figures)."""
        self.end = _snapshot(self.pids)
        self.bench_end = _own_cpu()
        self.machine_end = machine_cpu_seconds()

    def seconds(self) -> dict[str, float]:
        """CPU seconds used in the window, by label; the listed processes first."""
        if self.end is None:
            self.stop()
        assert self.end is not None
        used: dict[str, float] = {}
        for pid in self.pids:
            before, after = self.start.get(pid), self.end.get(pid)
            if before is not None and after is not None:
                used[self.names[pid]] = after - before
        listed = sum(used.values())
        used[LISTED] = listed
        used[BENCH] = self.bench_end - self.bench_start
        used[MACHINE] = self.machine_end - self.machine_start
        return used

    def report(self, result: ScenarioResult, tasks: int) -> None:
        """Adds CPU per task (ms) of each process to ``result``, and the raw seconds."""
        if not self.pids or tasks <= 0:
            return
        used = self.seconds()
        gone = [self.names[p] for p in self.pids if self.names[p] not in used]
        if gone:
            result.notes.append(f"gone before the end, left out of CPU per task: {gone}")
        per_task = {name: seconds / tasks * 1000.0 for name, seconds in used.items()}
        result.metrics += [Metric(f"CPU/task {name}", ms, "ms") for name, ms in per_task.items()]
        others = used[MACHINE] - used[LISTED] - used[BENCH]
        result.details["cpu"] = {
            "tasks": tasks,
            "ms_per_task": {name: round(ms, 4) for name, ms in per_task.items()},
            "seconds": {name: round(s, 3) for name, s in used.items()},
            "pids": {self.names[p]: p for p in self.pids},
            # CPU of processes neither listed nor the bench: the other load on the machine.
            "other_processes_s": round(max(0.0, others), 3),
        }


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system
