"""Where a process's CPU goes, from a py-spy profile in raw (collapsed stack) form.

    py-spy record --pid <gateway pid> --rate 500 --format raw --threads --nonblocking \\
        --duration 20 -o gateway.txt
    python -m benchmarks.profile_breakdown gateway.txt [--cpu-per-call-ms 1.03]

Each sample is one stack, root first. A sample counts towards a part when one of the
part's markers (a substring of a frame, such as a file path or a function name) is in its
stack; "own" counts each sample once, towards the innermost part found, so the "own"
column adds up to 100 %. With ``--cpu-per-call-ms`` (the process's CPU per call, which
``conveyor bench --pid`` reports as "CPU/task <role>"), each share is also given in ms of
CPU per call.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("grpc poller thread", ("_poller_thread", "poll_wrapper")),
    ("interceptors", ("interceptors.py", "interceptor.py", "tracing.py", "metrics/")),
    ("validation", ("intake/validation.py", "intake/checks.py", "validate_submit")),
    ("admission and quotas", ("intake/admission.py", "intake/quotas.py")),
    ("building the task and its messages", ("messages.py", "intake/submit.py (_prepare")),
    ("NATS publish and ack (nats-py)", ("publish.py", "nats/")),
    ("store call (gRPC client)", ("renewing.py", "task_finder", "_find_task")),
    ("SubmitTask handler", ("service.py (SubmitTask", "intake/submit.py")),
    ("grpc.aio server (Python side)", ("grpc/aio/", "grpc/_")),
    ("event loop", ("uvloop", "asyncio/", "run_forever", "_run_once")),
)
"""Parts of a submit, outermost first: the innermost one found in a stack owns the sample."""


def read(path: Path) -> Counter[str]:
    """Samples per stack, from py-spy's raw format ("frame;frame;... count" per line)."""
    stacks: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] += int(count)
    return stacks


def breakdown(stacks: Counter[str]) -> tuple[int, Counter[str], Counter[str]]:
    """Total samples, and samples per part: inclusive, and owned by the innermost part."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for stack, count in stacks.items():
        frames = stack.split(";")
        found = [name for name, marks in PARTS if any(m in f for f in frames for m in marks)]
        for name in found:
            inclusive[name] += count
        innermost = "other"
        for frame in reversed(frames):
            match = next((n for n, marks in PARTS if any(m in frame for m in marks)), None)
            if match is not None:
                innermost = match
                break
        own[innermost] += count
    return sum(stacks.values()), inclusive, own


def main() -> None:
    """Prints the breakdown as a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path, help="py-spy record --format raw output")
    parser.add_argument("--cpu-per-call-ms", type=float, default=0.0, metavar="MS")
    args = parser.parse_args()
    total, inclusive, own = breakdown(read(args.profile))
    if not total:
        raise SystemExit(f"{args.profile}: no samples")
    per_call = args.cpu_per_call_ms
    print(f"{total:,} samples" + (f"; {per_call:g} ms of CPU per call" if per_call else ""))
    print("| part | inclusive | own | own, ms per call |")
    print("|---|---:|---:|---:|")
    for name in [n for n, _ in PARTS] + ["other"]:
        share = own[name] / total
        ms = f"{share * per_call:.3f}" if per_call else "-"
        print(f"| {name} | {inclusive[name] / total:.1%} | {share:.1%} | {ms} |")


if __name__ == "__main__":
    main()
