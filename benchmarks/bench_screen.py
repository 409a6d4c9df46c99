"""What the store's screen costs per ``submitted`` event: one ``TaskEvents`` batch of no-op
tasks as the gateway sends them (custom JSON input, two labels), admitted again and again.

    python -m benchmarks.bench_screen [--events 500] [--rounds 30]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

from conveyor import messages, subjects
from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.client import custom
from conveyor.ids import new_task_id
from conveyor.tasks import timestamp
from store.screen import EventScreen


def submitted_batch(count: int) -> messages.Message:
    """``count`` no-op tasks' ``submitted`` events in one message of the gateway."""
    events = []
    for _ in range(count):
        request = custom("noop", {}, labels={"bench-run": "20261205T203723Z", "scenario": "x"})
        task = tasks_pb2.Task(
            id=new_task_id(),
            type="noop",
            state=tasks_pb2.TASK_STATE_PENDING,
            max_attempts=3,
            priority=tasks_pb2.TASK_PRIORITY_NORMAL,
            labels=dict(request.options.labels),
            create_time=timestamp(),
            version=1,
            namespace="default",
        )
        task.timeout.seconds = 300
        task_input = tasks_pb2.TaskInput(custom=request.custom)
        message = messages.task_message(task, task_input, events_pb2.RetryPolicy(), 3)
        events.append(messages.submitted_event(task, message, events_pb2.RetryPolicy()))
    return messages.event_batch(subjects.GATEWAY, "noop", "bench", events)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    subject, data, headers = submitted_batch(args.events)
    screen = EventScreen()
    took = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        admitted = screen.admit(1, subject, data, headers)
        took.append(time.perf_counter() - started)
        if len(admitted) != args.events:
            raise SystemExit(f"{args.events - len(admitted)} events refused")
    per_event = [seconds / args.events * 1e6 for seconds in took]
    print(
        f"screen, {args.events} submitted events per batch, {args.rounds} rounds: "
        f"{min(per_event):.1f} µs per event (fastest round), {statistics.median(per_event):.1f} "
        "(median)"
    )


if __name__ == "__main__":
    main()
