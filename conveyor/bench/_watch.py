"""The watch-fanout scenario: many WatchTask streams at once, each update timed.

The tasks are submitted with a ``run_at`` a few seconds ahead, so every watcher is
attached (and has received the task's current state, SCHEDULED) before anything happens;
then all tasks become due together and run. Each later update's latency is its receipt
time minus its ``update_time``, which is the time of the worker's event.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from dataclasses import dataclass, field

from google.protobuf import timestamp_pb2

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.bench._http import sse_watch
from conveyor.bench._options import TARGET_WATCH_MISSED, TARGET_WATCH_P99, WATCH_FANOUT
from conveyor.bench._results import Latency, Metric, ScenarioResult, latency_metrics
from conveyor.bench._tracking import BenchError, RunContext, submit_batches, verify

CHANNELS = 4
"""Client connections the watchers are spread over."""
LEAD_SECONDS = 2.0
LEAD_PER_WATCHER = 0.006
"""How far ahead tasks are scheduled: time for every watcher to attach first."""


@dataclass
class WatchRecord:
    """What one watcher received."""

    first: tasks_pb2.Task | None = None
    last: tasks_pb2.Task | None = None
    latencies: list[float] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)

    @property
    def missed(self) -> int:
        """Versions between the first and last update that never arrived."""
        if self.first is None or self.last is None:
            return 0
        return self.last.version - self.first.version - len(self.versions)

    @property
    def in_order(self) -> bool:
        """True when the updates after the first came in version order, one by one."""
        start = self.first.version if self.first is not None else 0
        return self.versions == list(range(start + 1, start + 1 + len(self.versions)))


def _seconds(ts: timestamp_pb2.Timestamp) -> float:
    return ts.ToMicroseconds() / 1e6


async def watch_fanout(ctx: RunContext) -> ScenarioResult:
    """``--watchers`` concurrent WatchTask streams over tasks that run at the same moment;
    with ``--http``, the same over gRPC first, then as Server-Sent Events, so the two are
    measured side by side on the same system."""
    result = ScenarioResult(WATCH_FANOUT)
    if ctx.options.http_url:
        grpc_records, grpc_late = await _fanout(ctx, result, over_http=False)
        grpc_result = ScenarioResult(WATCH_FANOUT)
        _summarise(grpc_result, grpc_records, grpc_late)
        if "event_to_watcher" in grpc_result.latencies:
            latency = grpc_result.latencies["event_to_watcher"]
            result.latencies["grpc_event_to_watcher"] = latency
            result.metrics += latency_metrics("grpc event→watcher", latency, with_p90=True)
        result.details.update({f"grpc_{k}": v for k, v in grpc_result.details.items()})
        result.notes += [f"gRPC: {note}" for note in grpc_result.notes]
    records, late = await _fanout(ctx, result, over_http=bool(ctx.options.http_url))
    _summarise(result, records, late)
    if ctx.options.http_url:
        result.notes.append(
            "watchers over the HTTP door's Server-Sent Events (--http); "
            "grpc event→watcher: the same fan-out over gRPC WatchTask just before"
        )
    return result


async def _fanout(
    ctx: RunContext, result: ScenarioResult, over_http: bool
) -> tuple[list[WatchRecord], int]:
    """One fan-out: the watchers' records and how many attached late; the tasks counted
    in ``result``."""
    count = ctx.options.watchers
    lead = LEAD_SECONDS + count * LEAD_PER_WATCHER
    run_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=lead)
    over = "SSE" if over_http else "gRPC"
    phase = ctx.display.phase(f"{WATCH_FANOUT}: submitting scheduled tasks ({over})", total=count)
    submission = await submit_batches(ctx, WATCH_FANOUT, count, phase, run_at=run_at)
    phase.done()
    attach = ctx.display.phase(f"{WATCH_FANOUT}: attaching watchers ({over})", total=count)
    clients = [ctx.client.clone() for _ in range(CHANNELS)]
    attached = 0
    all_attached = asyncio.Event()

    async def watch_one(index: int, task_id: str) -> WatchRecord:
        nonlocal attached
        record = WatchRecord()
        if over_http and ctx.options.http_url:
            stream = sse_watch(ctx.options.http_url, task_id)
        else:
            stream = clients[index % CHANNELS].watch(task_id)
        async for task in stream:
            received = time.time()
            if record.first is None:
                record.first = task
                attached += 1
                attach.advance()
                if attached == count:
                    all_attached.set()
            else:
                record.latencies.append(received - _seconds(task.update_time))
                record.versions.append(task.version)
            record.last = task
        return record

    watchers: list[asyncio.Task[WatchRecord]] = []
    try:
        watchers += [
            asyncio.create_task(watch_one(i, task_id)) for i, task_id in enumerate(submission.ids)
        ]
        until_due = run_at.timestamp() - time.time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_attached.wait(), max(until_due, 0.0))
        late = count - attached
        attach.done()
        running = ctx.display.phase(f"{WATCH_FANOUT}: tasks running, watchers receiving ({over})")
        try:
            records = await asyncio.wait_for(asyncio.gather(*watchers), ctx.options.timeout)
        except TimeoutError:
            raise BenchError(
                f"{WATCH_FANOUT}: watches not finished after {ctx.options.timeout:g}s"
            ) from None
        running.done()
    finally:
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        for client in clients:
            await client.close()
    outcome = await verify(ctx, WATCH_FANOUT, submission.ids)
    result.submitted += len(submission.ids)
    result.completed += outcome.completed
    if outcome.not_completed:
        result.notes.append(f"tasks not completed ({over}): {outcome.not_completed}")
    return records, late


def _summarise(result: ScenarioResult, records: list[WatchRecord], late: int) -> None:
    latencies = [s for r in records for s in r.latencies]
    delivered = len(latencies)
    missed = sum(r.missed for r in records)
    out_of_order = sum(not r.in_order for r in records)
    ended_completed = sum(
        r.last is not None and r.last.state == tasks_pb2.TASK_STATE_COMPLETED for r in records
    )
    result.metrics.append(Metric("watchers", len(records), ""))
    result.metrics.append(Metric("updates delivered", delivered, ""))
    result.metrics.append(Metric("updates missed", missed, "", TARGET_WATCH_MISSED))
    if latencies:
        latency = Latency.of(latencies)
        result.latencies["event_to_watcher"] = latency
        result.metrics += latency_metrics(
            "event→watcher", latency, p99=TARGET_WATCH_P99, with_p90=True
        )
    result.elapsed = max(
        (
            _seconds(r.last.update_time) - _seconds(r.first.update_time)
            for r in records
            if r.first is not None and r.last is not None
        ),
        default=0.0,
    )
    result.details.update(
        {
            "watchers": len(records),
            "attached_late": late,
            "updates_delivered": delivered,
            "updates_missed": missed,
            "watchers_out_of_order": out_of_order,
            "watchers_ending_completed": ended_completed,
        }
    )
    if late:
        result.notes.append(
            f"{late} watchers attached after their task was due; "
            "their first update is the state they found"
        )
    if out_of_order:
        result.notes.append(f"{out_of_order} watchers saw updates out of order")
