"""Running one delivered task: decide, run the handler chain, record the outcome.

The outcome is published as an event before the message is acked, naked or terminated,
so a crash between the two repeats the attempt (at-least-once) rather than losing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import math
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from conveyor import jetstream, tracing
from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.context import TaskContext
from conveyor.errors import NonRetryable, Retry, TaskCancelled, TaskTimeout
from conveyor.jetstream import CANCELLED_TTL
from conveyor.jsonlike import valid_text
from conveyor.logs import attempt_var, task_id_var, task_type_var
from conveyor.registry import Registry, RetryPolicy, TaskType
from conveyor.tasks import now, seconds, timestamp
from worker.events import EventPublisher
from worker.middleware import Call, Job
from worker.progress import ProgressThrottle

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 300.0
RECORD_PATIENCE = 60.0
"""How long an event of a delivery is retried while JetStream does not take it (a leader
election, a restart) before the task is left to its lease."""
LEASE_BEAT = 1.0
"""How often a slow publish tells JetStream the task is still held: within the shortest
lease allowed (CONVEYOR_ACK_WAIT_SECONDS >= 1)."""
CHECK_TIMEOUT = 5.0
MAX_RETRY_DELAY = 365 * 86_400.0
"""The longest delay a handler's Retry may ask for, as the longest a submit may ask for."""
PRUNE_EVERY = 3600.0
"""How often ids learnt longer ago than the markers live are dropped."""


class CancelledTasks:
    """The ids of cancelled tasks, kept current by a watch of the ``conveyor_cancelled``
    bucket (and by cancel signals), so checking a task before it starts costs no round
    trip.

    The set is trusted only while the watch is live: from the moment it holds every
    marker present when the watch (re)started, and for as long as the connection has not
    reconnected since (a marker put while the connection was away may not have reached
    the watch yet). Otherwise a check reads the bucket, as every check used to, and a
    reconnect restarts the watch."""

    def __init__(self, kv: KeyValue, reconnects: Callable[[], int]) -> None:
        self._kv = kv
        self._reconnects = reconnects
        self.ids: dict[str, float] = {}
        """Cancelled ids, each with the (monotonic) time it was learnt."""
        self._pruned = time.monotonic()
        self._live_at: int | None = None
        self._loaded = asyncio.Event()
        self._watch: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 5.0) -> None:
        """Starts the watch and waits (up to ``timeout``) for the markers present now."""
        self._restart()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._loaded.wait()

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch

    def _restart(self) -> None:
        self._live_at = None
        self._loaded.clear()
        if self._watch is not None:
            self._watch.cancel()
        self._watch = asyncio.create_task(self._follow(), name="cancelled-tasks")

    async def _follow(self) -> None:
        while True:
            live = functools.partial(self._went_live, self._reconnects())
            try:
                await jetstream.follow_once(self._kv, self._changed, live)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("watch of cancelled tasks stopped (%s); restarting", exc)
            self._live_at = None
            await asyncio.sleep(1.0)

    def _went_live(self, reconnects: int) -> None:
        """Every marker present when the watch started is in (``reconnects`` then)."""
        self._live_at = reconnects
        self._loaded.set()

    async def _changed(self, task_id: str, marker: bytes | None) -> None:
        if marker is None:
            self.ids.pop(task_id, None)
        else:
            self.add(task_id)

    def add(self, task_id: str) -> None:
        """A cancelled task (a marker seen by the watch, or a cancel signal: the task is
        cancelled whatever the watch says yet).

        Markers expire from the bucket after CANCELLED_TTL without the watch telling, so
        ids learnt longer ago than that are forgotten here too: the set stays bounded, and
        a forgotten id's marker is gone from the bucket as well."""
        now = time.monotonic()
        self.ids[task_id] = now
        if now - self._pruned > PRUNE_EVERY:
            self._pruned = now
            expired = [i for i, seen in self.ids.items() if now - seen > CANCELLED_TTL]
            for expired_id in expired:
                del self.ids[expired_id]

    async def is_cancelled(self, task_id: str) -> bool:
        """Whether the task is cancelled: "no" from the set while it is trusted (the
        common case, no round trip); "yes" is always confirmed by reading the bucket (a
        re-drive deletes the marker just before queueing the task again, and the watch
        may not have shown the deletion yet)."""
        known = task_id in self.ids
        live_at = self._live_at
        if not known and live_at is not None and live_at == self._reconnects():
            return False
        if live_at is not None and live_at != self._reconnects():
            self._restart()  # reconnected since the watch was complete
        try:
            entry = await asyncio.wait_for(self._kv.get(task_id), CHECK_TIMEOUT)
        except KeyNotFoundError:
            self.ids.pop(task_id, None)
            return False
        except Exception as exc:
            log.warning("could not check cancellation of %s: %s", task_id, exc)
            return known
        if not entry.value:
            self.ids.pop(task_id, None)
        return bool(entry.value)


def retry_policy_of(message: events_pb2.TaskMessage) -> RetryPolicy:
    """The task's backoff, with defaults for unset fields."""
    p = message.retry_policy
    default = RetryPolicy()
    return RetryPolicy(
        initial_delay=seconds(p.initial_delay) or default.initial_delay,
        max_delay=seconds(p.max_delay) or default.max_delay,
        multiplier=p.multiplier or default.multiplier,
    )


def progress_report(current: int, total: int, text: str) -> tasks_pb2.TaskProgress:
    """What a handler reported, checked here so its mistake is a clear error at its call
    (a message protobuf refuses would otherwise fail deep in the publish)."""
    for name, value in (("current", current), ("total", total)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
            raise ValueError(f"progress {name} must be an int from 0 to 2**64-1 (got {value!r})")
    if not isinstance(text, str):
        raise TypeError(f"progress message must be a str (got {type(text).__name__})")
    return tasks_pb2.TaskProgress(current=current, total=total, message=valid_text(text[:500]))


def text_of(value: object) -> str:
    """``str(value)``, or a note when that fails: an exception whose message cannot be read
    must still fail its attempt, not the publish of the outcome."""
    try:
        return str(value)
    except Exception:
        return f"({type(value).__name__} whose message could not be read)"


def retry_asked(retry: Retry) -> tuple[str, float | None]:
    """The reason and delay a handler's Retry asks for; a delay that is not a number of
    seconds within MAX_RETRY_DELAY is replaced by the task's backoff (None), and said so."""
    reason, delay = text_of(retry.reason), retry.delay
    if delay is None:
        return reason, None
    number = isinstance(delay, int | float) and not isinstance(delay, bool)
    if number and math.isfinite(delay) and 0 <= delay <= MAX_RETRY_DELAY:
        return reason, float(delay)
    note = f"Retry delay {text_of(delay)[:40]} is not 0..{MAX_RETRY_DELAY:.0f} seconds"
    return f"{reason} ({note}; the task's backoff was used)", None


def task_error(attempt: int, kind: str, message: str) -> tasks_pb2.TaskError:
    """A TaskError stamped now."""
    return tasks_pb2.TaskError(
        attempt=attempt, type=valid_text(kind), message=valid_text(message[:4000]), time=timestamp()
    )


class _AttemptStart:
    """The ``started`` event of one attempt, published once the attempt has run for
    ``delay`` seconds (at once when ``delay`` is 0).

    An attempt that ends sooner publishes no ``started`` event: its outcome carries the
    start time instead, and the store records the start from it as its own version. A
    short task then costs one event fewer to publish, store and apply, and watchers
    still see it RUNNING; a long one is shown RUNNING at most ``delay`` late.
    """

    def __init__(
        self, publish: Callable[[Timestamp], Coroutine[Any, Any, None]], delay: float
    ) -> None:
        self.time = timestamp()
        self._publish = publish
        self._delay = delay
        self._timer: asyncio.TimerHandle | None = None
        self._sending: asyncio.Task[None] | None = None

    async def begin(self) -> None:
        """Publishes the start now (no delay) or arms the timer that will."""
        if self._delay <= 0:
            self._send()
            await self.now()
        else:
            self._timer = asyncio.get_running_loop().call_later(self._delay, self._send)

    def _send(self) -> None:
        self._timer = None
        self._sending = asyncio.get_running_loop().create_task(self._publish(self.time))
        # Retrieved here too: a task handed back on shutdown never awaits its outcome.
        self._sending.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def now(self) -> None:
        """Makes sure the start is published (before a progress event, which must
        follow it); raises if publishing it failed."""
        if self._timer is not None:
            self._timer.cancel()
            self._send()
        if self._sending is not None:
            await asyncio.shield(self._sending)

    async def outcome_start(self) -> Timestamp | None:
        """The start time the outcome event must carry: None once the ``started`` event
        is recorded; the time when it was not published (not due yet) or not taken."""
        if self._timer is not None:
            self.cancel()
            return self.time
        if self._sending is None:
            return None
        try:
            await asyncio.shield(self._sending)
        except Exception as exc:
            log.warning("recording the start failed (%s); the outcome carries it", exc)
            return self.time
        return None

    def cancel(self) -> None:
        """Stops a pending publish of the start (the attempt is over or handed back)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def run_of(msg: Msg) -> int:
    """Which run of its task a delivery belongs to: its message's TASKS stream sequence,
    the same for every delivery of the message and new with each re-drive."""
    return int(msg.metadata.sequence.stream)


class Runner:
    """Handles deliveries of tasks: one call of ``handle`` per message."""

    def __init__(
        self,
        registry: Registry,
        publisher: EventPublisher,
        cancelled: CancelledTasks,
        call: Call,
        start_event_delay: float,
        progress_interval: float = 0.0,
    ) -> None:
        self._progress_interval = progress_interval
        self._registry = registry
        self._publisher = publisher
        self._cancelled = cancelled
        self._call = call
        self._start_event_delay = start_event_delay
        self.shutting_down = False

    async def handle(self, msg: Msg) -> None:
        """Processes one message to an ack, nak or term."""
        try:
            message = events_pb2.TaskMessage.FromString(msg.data)
        except DecodeError:
            log.error("dropping a malformed task message on %s", msg.subject)
            await msg.term()
            return
        run_attempt = msg.metadata.num_delivered or 1
        attempt = message.attempt_offset + run_attempt
        task_id_var.set(message.task_id)
        task_type_var.set(message.type)
        attempt_var.set(attempt)
        span = tracing.tracer.start_span(
            f"run {message.type}",
            context=tracing.extract(msg.headers),
            kind=SpanKind.CONSUMER,
            attributes={
                "conveyor.task_id": message.task_id,
                "conveyor.task_type": message.type,
                "conveyor.attempt": attempt,
            },
        )
        try:
            with trace.use_span(span, end_on_exit=True):
                await self._handle(msg, message, run_attempt, attempt)
        except asyncio.CancelledError:
            if self.shutting_down:
                # Hand the task back for immediate redelivery to another worker.
                await msg.nak()
                log.info("handed back on shutdown")
            raise
        except Exception:
            # Publishing the outcome failed (NATS away): leave the message unacked, so it
            # is redelivered when its lease runs out and the attempt is repeated.
            log.exception("could not record the outcome; the task will be redelivered")

    async def _handle(
        self, msg: Msg, message: events_pb2.TaskMessage, run_attempt: int, attempt: int
    ) -> None:
        if await self._cancelled.is_cancelled(message.task_id):
            await self._record(msg, message, attempt, "cancelled", cancelled=events_pb2.Cancelled())
            await msg.ack()
            log.debug("skipped: cancelled before it started")
            return
        task_type = self._registry.get(message.type)
        if task_type is None:
            log.error("no handler for type %s here; handing it back", message.type)
            await msg.nak(delay=5)
            return
        max_attempts = message.max_attempts or task_type.max_attempts
        if run_attempt > max_attempts:
            error = task_error(
                attempt,
                "worker_lost",
                f"the worker running attempt {attempt - 1} stopped before finishing, "
                "and no attempts are left",
            )
            await self._record(
                msg, message, attempt, "failed", failed=events_pb2.Failed(error=error)
            )
            await msg.term()
            log.warning("failed: %s", error.message)
            return
        started = _AttemptStart(
            lambda time: self._record(
                msg, message, attempt, "started", time=time, started=events_pb2.Started()
            ),
            self._start_event_delay,
        )
        try:
            await started.begin()
            await self._run(msg, message, task_type, started, run_attempt, attempt)
        finally:
            started.cancel()

    async def _run(
        self,
        msg: Msg,
        message: events_pb2.TaskMessage,
        task_type: TaskType,
        started: _AttemptStart,
        run_attempt: int,
        attempt: int,
    ) -> None:
        progress_count = 0

        async def send_progress(current: int, total: int, text: str) -> None:
            nonlocal progress_count
            progress_count += 1
            report = progress_report(current, total, text)
            await started.now()  # a watcher sees the task running before its progress
            await self._publisher.publish(
                message,
                attempt,
                f"progress:{progress_count}",
                run=run_of(msg),
                progressed=events_pb2.Progressed(progress=report),
            )

        throttle = ProgressThrottle(send_progress, self._progress_interval)
        try:
            await self._run_with(msg, message, task_type, started, run_attempt, attempt, throttle)
        finally:
            throttle.close()

    async def _run_with(
        self,
        msg: Msg,
        message: events_pb2.TaskMessage,
        task_type: TaskType,
        started: _AttemptStart,
        run_attempt: int,
        attempt: int,
        throttle: ProgressThrottle,
    ) -> None:
        max_attempts = message.max_attempts or task_type.max_attempts
        ctx = TaskContext(
            task_id=message.task_id,
            task_type=message.type,
            attempt=attempt,
            max_attempts=message.attempt_offset + max_attempts,
            timeout=seconds(message.timeout) or task_type.timeout or DEFAULT_TIMEOUT,
            worker_id=self._publisher.worker_id,
            _progress=throttle.report,
        )
        job = Job(msg=msg, message=message, task_type=task_type, ctx=ctx)
        outcome: Exception | None = None
        try:
            result = await self._call(job)
        except Exception as exc:
            outcome = exc
        await throttle.flush()  # the final progress is recorded before the outcome
        start_time = await started.outcome_start()
        if isinstance(outcome, TaskCancelled):
            await self._record(
                msg,
                message,
                attempt,
                "cancelled",
                start_time=start_time,
                cancelled=events_pb2.Cancelled(),
            )
            await msg.ack()
            log.debug("cancelled while running")
        elif isinstance(outcome, NonRetryable):
            await self._fail(job, attempt, type(outcome).__name__, text_of(outcome), start_time)
        elif isinstance(outcome, Retry):
            reason, delay = retry_asked(outcome)
            await self._retry_or_fail(job, run_attempt, attempt, "Retry", reason, start_time, delay)
        elif isinstance(outcome, TaskTimeout):
            await self._retry_or_fail(
                job, run_attempt, attempt, "timeout", text_of(outcome), start_time
            )
        elif outcome is not None:
            kind = type(outcome).__name__
            text = text_of(outcome)
            log.warning("attempt failed: %s: %s", kind, text, exc_info=outcome)
            await self._retry_or_fail(job, run_attempt, attempt, kind, text, start_time)
        else:
            await self._record(
                msg,
                message,
                attempt,
                "completed",
                start_time=start_time,
                completed=events_pb2.Completed(result=result),
            )
            await msg.ack()
            log.debug("completed")

    async def _retry_or_fail(
        self,
        job: Job,
        run_attempt: int,
        attempt: int,
        kind: str,
        text: str,
        start_time: Timestamp | None,
        delay: float | None = None,
    ) -> None:
        max_attempts = job.message.max_attempts or job.task_type.max_attempts
        if run_attempt >= max_attempts:
            await self._fail(job, attempt, kind, text, start_time)
            return
        if delay is None:
            delay = retry_policy_of(job.message).delay(run_attempt, random.random())
        error = task_error(attempt, kind, text or kind)
        when = timestamp(now() + dt.timedelta(seconds=delay))
        await self._record(
            job.msg,
            job.message,
            attempt,
            "retrying",
            start_time=start_time,
            retrying=events_pb2.Retrying(error=error, next_attempt_time=when),
        )
        await job.msg.nak(delay=max(delay, 0.001))
        log.debug("retrying in %.2fs after %s: %s", delay, kind, text)

    async def _fail(
        self, job: Job, attempt: int, kind: str, text: str, start_time: Timestamp | None = None
    ) -> None:
        error = task_error(attempt, kind, text or kind)
        await self._record(
            job.msg,
            job.message,
            attempt,
            "failed",
            start_time=start_time,
            failed=events_pb2.Failed(error=error),
        )
        await job.msg.term()
        log.warning("failed for good: %s: %s", kind, text)

    async def _record(
        self,
        msg: Msg,
        message: events_pb2.TaskMessage,
        attempt: int,
        key: str,
        *,
        time: Timestamp | None = None,
        start_time: Timestamp | None = None,
        **kind: Any,
    ) -> None:
        """Publishes an event of this delivery, retrying while JetStream does not take it
        and keeping the task's lease meanwhile: without this, every delivery during a
        leader election of a few seconds would be given up and redelivered, spending the
        task's attempts (or running its handler again) although nothing failed but NATS.
        The common case is one await: the lease is only renewed (by a timer) when a
        publish takes longer than LEASE_BEAT."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + RECORD_PATIENCE
        delay = 0.1
        while True:
            keeper = _LeaseKeeper(msg, loop)
            try:
                await self._publisher.publish(
                    message, attempt, key, time=time, start_time=start_time, run=run_of(msg), **kind
                )
                return
            except Exception as exc:
                if loop.time() + delay > give_up:
                    raise
                log.warning("recording %s failed (%s); trying again", key.split(":")[0], exc)
            finally:
                keeper.cancel()
            with contextlib.suppress(Exception):
                await msg.in_progress()
            await asyncio.sleep(delay)
            delay = min(delay * 2, LEASE_BEAT)


class _LeaseKeeper:
    """Sends the message's in_progress every LEASE_BEAT until cancelled: a timer, so a
    publish answered in time costs no task or future."""

    def __init__(self, msg: Msg, loop: asyncio.AbstractEventLoop) -> None:
        self._msg = msg
        self._loop = loop
        self._beating: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = loop.call_later(LEASE_BEAT, self._beat)

    def _beat(self) -> None:
        self._beating = self._loop.create_task(self._send())
        self._timer = self._loop.call_later(LEASE_BEAT, self._beat)

    async def _send(self) -> None:
        with contextlib.suppress(Exception):
            await self._msg.in_progress()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
