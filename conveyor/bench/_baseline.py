"""The raw JetStream ceiling: what Python and this nats-server do with no state kept.

Messages are published pipelined (windows of PUBLISH_WINDOW publishes awaited together,
as the gateway does) to a scratch work-queue stream with file storage, like TASKS, while a
pull consumer fetches FETCH_BATCH at a time and acks each message. The rate is messages
from the first publish to the last ack, flushed. The stream is deleted afterwards.

The scratch stream is the bench's own, not part of Conveyor's wire contract, so its names
live here rather than in ``conveyor.subjects``; no Conveyor stream listens on its subject.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from conveyor.bench._display import Phase
from conveyor.bench._options import BASELINE
from conveyor.bench._results import Metric, ScenarioResult
from conveyor.bench._tracking import BenchError, RunContext

STREAM = "BENCH_BASELINE"
SUBJECT = "conveyor_bench.baseline"
CONSUMER = "bench_baseline"
PUBLISH_WINDOW = 256
FETCH_BATCH = 256
PAYLOAD = b"\x00" * 128
"""About the size of a noop task message."""


async def _connect(url: str, name: str) -> NATS:
    refusals: list[str] = []

    async def on_error(exc: Exception) -> None:
        refusals.append(str(exc))

    try:
        nc: NATS = await nats.connect(
            url, name=name, connect_timeout=5, max_reconnect_attempts=2, error_cb=on_error
        )
    except Exception as exc:
        if any("Authorization Violation" in r for r in refusals):
            raise BenchError(
                f"{BASELINE}: the NATS server at {url} takes only its users (conveyor dev "
                "runs one per service): point --nats-url at a nats-server of the bench's "
                "own, as scripts/bench does, or leave --baseline out"
            ) from None
        raise BenchError(f"{BASELINE}: cannot connect to NATS at {url}: {exc}") from None
    return nc


async def _drop_stream(js: JetStreamContext) -> None:
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(STREAM)


async def _publish(js: JetStreamContext, count: int) -> None:
    for start in range(0, count, PUBLISH_WINDOW):
        size = min(PUBLISH_WINDOW, count - start)
        await asyncio.gather(*(js.publish(SUBJECT, PAYLOAD) for _ in range(size)))


async def _consume(js: JetStreamContext, count: int, phase: Phase) -> None:
    sub = await js.pull_subscribe_bind(CONSUMER, STREAM)
    received = 0
    while received < count:
        try:
            messages = await sub.fetch(min(FETCH_BATCH, count - received), timeout=5.0)
        except TimeoutError:
            raise BenchError(f"{BASELINE}: no messages for 5s") from None
        for msg in messages:
            await msg.ack()
        received += len(messages)
        phase.advance(len(messages))


async def baseline(ctx: RunContext) -> ScenarioResult:
    """Pipelined publish plus fetch-and-ack on a scratch stream: msgs/s end to end."""
    result = ScenarioResult(BASELINE)
    count = ctx.options.task_count(BASELINE)
    producer = await _connect(ctx.options.nats_url, "conveyor-bench-producer")
    consumer = await _connect(ctx.options.nats_url, "conveyor-bench-consumer")
    js = producer.jetstream(timeout=10)
    try:
        await _drop_stream(js)
        await js.add_stream(
            StreamConfig(
                name=STREAM,
                subjects=[SUBJECT],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
            )
        )
        await js.add_consumer(
            STREAM, ConsumerConfig(durable_name=CONSUMER, ack_policy=AckPolicy.EXPLICIT)
        )
        phase = ctx.display.phase(f"{BASELINE}: raw JetStream publish + fetch + ack", count)
        started = time.perf_counter()
        await asyncio.gather(
            _publish(js, count), _consume(consumer.jetstream(timeout=10), count, phase)
        )
        await consumer.flush(timeout=10)
        elapsed = time.perf_counter() - started
        phase.done()
    finally:
        with contextlib.suppress(Exception):
            await _drop_stream(js)
        await producer.close()
        await consumer.close()
    result.elapsed = elapsed
    result.metrics.append(Metric("raw JetStream e2e", count / elapsed, "msgs/s"))
    result.details.update(
        {
            "messages": count,
            "payload_bytes": len(PAYLOAD),
            "publish_window": PUBLISH_WINDOW,
            "fetch_batch": FETCH_BATCH,
            "stream": STREAM,
        }
    )
    return result
