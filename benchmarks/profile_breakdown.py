"""Where a process's CPU goes, from a py-spy profile in raw (collapsed stack) form.

    py-spy record --pid <gateway pid> --rate 500 --format raw --threads --native \\
        --duration 15 -o gateway.txt
    python -m benchmarks.profile_breakdown gateway.txt [--cpu-per-call-ms 1.03]

Each sample is one stack, root first. Samples whose innermost frame is a wait for events
(``epoll_wait`` and the like: py-spy's ``--native`` mode records idle threads too) are
left out. Each other sample counts once, towards a part: the innermost frame that belongs
to one of the first-tier parts (Conveyor's code, nats-py, protobuf) decides; a sample with
none of those goes to the innermost second-tier part (gRPC's Cython and C core, the event
loop, the interpreter). With ``--cpu-per-call-ms`` (the process's CPU per call, which
``conveyor bench --pid`` reports as "CPU/task <role>"), each share is also given in ms of
CPU per call. Without ``--native`` native code is invisible and lands on the Python frame
that called it.

Shares of system calls are not to be trusted: py-spy stops the process to sample it, and a
thread stops at its next return from the kernel, so samples pile up on system calls
(``getpid``, socket writes). ``perf record -g -p <pid>`` and ``perf stat -e
syscalls:sys_enter_<call>`` show what they really cost (docs/performance.md, "The
worker's CPU per task").

``--role worker`` or ``--role store`` breaks a worker's or a store's profile down by what
the process was doing instead (``ROLE_PARTS``: NATS writes and reads, a task's run, the
fetch loop; screening, SQLite, building Task messages, the state machine...), and
``--thread NAME`` keeps one thread's samples.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

Part = tuple[str, tuple[str, ...]]
FIRST_TIER: tuple[Part, ...] = (
    ("protobuf (upb): parse, build, serialise", ("_message.abi3", "upb_", "well_known_types")),
    ("NATS socket writes (nats-py flusher task)", ("TcpTransport.write", "Client._flusher")),
    ("nats-py: publish, read loop, acks", ("nats/",)),
    ("our publisher (conveyor/publish.py)", ("conveyor/publish.py",)),
    (
        "building the task and its messages",
        ("conveyor/messages.py", "Submitter._prepare", "conveyor/tasks.py", "conveyor/ids.py"),
    ),
    (
        "validation",
        ("intake/validation.py", "intake/checks.py", "intake/unknown.py", "intake/inputs.py"),
    ),
    ("admission and quotas", ("intake/admission.py", "intake/quotas.py")),
    ("SubmitTask handler, the rest", ("gateway/service.py", "intake/submit.py")),
    ("store call", ("conveyor/renewing.py", "gateway/relay.py")),
    ("tracing (OpenTelemetry)", ("conveyor/tracing.py", "opentelemetry", "trace/", "sampling.py")),
    ("metrics", ("conveyor/metrics/", "prometheus_client")),
    (
        "other interceptors (errors, auth, caching)",
        ("conveyor/auth/interceptor.py", "conveyor/interceptors.py", "_wrap_unary", "_tolerant"),
    ),
)
"""Conveyor's own code, nats-py and protobuf: the innermost frame of one of these decides."""
SECOND_TIER: tuple[Part, ...] = (
    ("gRPC: Cython layer and C core", ("cygrpc", "grpc/", "libgrpc")),
    ("event loop (uvloop, asyncio)", ("uvloop", "loop.c", "asyncio", "uv_", "uv__")),
    ("CPython interpreter", ("libpython", "object.h", "ceval", "Python/")),
)
IDLE = ("epoll_wait", "epoll_pwait", "poll (", "ppoll", "select (", "nanosleep")
"""Innermost frames of a thread waiting for something to do."""
BLOCKED = ("PyThread_acquire_lock_timed", "_queue_SimpleQueue_get")
"""Frames near the top of a thread blocked on a lock or queue (aiosqlite's and the
thread pools' idle threads), left out too."""
ROLE_PARTS: dict[str, tuple[Part, ...]] = {
    "worker": (
        ("getpid (asyncio.get_running_loop's fork check)", ("getpid (",)),
        ("NATS socket writes (nats-py flusher task)", ("Client._flusher",)),
        ("NATS reads (read loop, parser, message objects)", ("Client._read_loop",)),
        ("subscription callbacks (deliveries, publish acks)", ("Subscription._wait_for_msgs",)),
        ("a task's run: decode, middleware, handler, outcome event, ack", ("TypeConsumer._run",)),
        ("fetch loop: pull requests, slots", ("TypeConsumer.run",)),
    ),
    "store": (
        ("NATS socket writes (acks, pull requests)", ("Client._flusher",)),
        ("NATS reads", ("Client._read_loop",)),
        ("screening events (store/screen.py)", ("EventScreen.admit",)),
        ("SQLite statements", ("InlineSqlite.",)),
        ("Task messages for history and watchers (TaskBuilder)", ("TaskBuilder.task",)),
        ("state machine (store/transitions.py)", ("transition (",)),
        ("events decoded (store/convert.py)", ("events_from_proto",)),
        ("applying, the rest: loading, rows, transaction", ("TaskRepository.apply",)),
        ("the applier's loop: fetch, ack, watchers", ("EventApplier.run",)),
        ("gRPC calls (reads)", ("cygrpc",)),
    ),
}
"""With ``--role``: each busy sample goes to the first of these parts found anywhere in
its stack (what the process was doing, rather than the innermost code)."""


def read(path: Path) -> Counter[str]:
    """Samples per stack, from py-spy's raw format ("frame;frame;... count" per line)."""
    stacks: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] += int(count)
    return stacks


def _innermost(frames: list[str], parts: tuple[Part, ...]) -> str | None:
    for frame in reversed(frames):
        for name, marks in parts:
            if any(mark in frame for mark in marks):
                return name
    return None


def _anywhere(frames: list[str], parts: tuple[Part, ...]) -> str | None:
    for name, marks in parts:
        if any(mark in frame for frame in frames for mark in marks):
            return name
    return None


def breakdown(
    stacks: Counter[str], role: str | None = None, thread: str | None = None
) -> tuple[int, int, Counter[str]]:
    """Samples in all, samples busy (not waiting), and busy samples per part: by
    innermost part, or with ``role`` by that role's parts (``ROLE_PARTS``); ``thread``
    keeps the samples of the threads whose name contains it (``--threads`` profiles)."""
    parts: Counter[str] = Counter()
    busy = 0
    total = 0
    for stack, count in stacks.items():
        frames = stack.split(";")
        if thread is not None and thread not in frames[0]:
            continue
        total += count
        if any(mark in frames[-1] for mark in IDLE):
            continue
        if any(mark in frame for frame in frames[-4:] for mark in BLOCKED):
            continue
        busy += count
        if role is not None:
            name = _anywhere(frames, ROLE_PARTS[role]) or "other (event loop, interpreter)"
        else:
            name = _innermost(frames, FIRST_TIER) or _innermost(frames, SECOND_TIER) or "other"
        parts[name] += count
    return total, busy, parts


def main() -> None:
    """Prints the breakdown as a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path, help="py-spy record --format raw output")
    parser.add_argument("--cpu-per-call-ms", type=float, default=0.0, metavar="MS")
    parser.add_argument(
        "--role",
        choices=sorted(ROLE_PARTS),
        help="a worker's or store's parts (default: a submit's)",
    )
    parser.add_argument("--thread", metavar="NAME", help="only threads whose name contains NAME")
    args = parser.parse_args()
    total, busy, parts = breakdown(read(args.profile), args.role, args.thread)
    if not busy:
        raise SystemExit(f"{args.profile}: no busy samples")
    per_call = args.cpu_per_call_ms
    shown = f"; {per_call:g} ms of CPU per call" if per_call else ""
    print(f"{total:,} samples, {busy:,} busy{shown}")
    print("| part | share of busy samples | ms of CPU per call |")
    print("|---|---:|---:|")
    if args.role is not None:
        names = [n for n, _ in ROLE_PARTS[args.role]] + ["other (event loop, interpreter)"]
    else:
        names = [n for n, _ in FIRST_TIER + SECOND_TIER] + ["other"]
    for name in names:
        share = parts[name] / busy
        ms = f"{share * per_call:.3f}" if per_call else "-"
        print(f"| {name} | {share:.1%} | {ms} |")


if __name__ == "__main__":
    main()
