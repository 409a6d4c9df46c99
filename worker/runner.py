"""Running one delivered task: decide, run the middleware chain, record the outcome.

The outcome is published as an event before the message is acked, naked or terminated,
so a crash between the two repeats the attempt (at-least-once) rather than losing it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.msg import Msg
from opentelemetry import trace

from conveyor import tracing
from conveyor.api.events.v1 import events_pb2
from conveyor.context import TaskContext
from conveyor.logs import attempt_var, task_id_var, task_type_var
from conveyor.pull import delivery_count
from conveyor.registry import Registry, TaskType
from conveyor.tasks import now, seconds, timestamp
from worker.attempt import LEASE_BEAT, AttemptStart, Beats
from worker.cancelled import CancelledTasks
from worker.events import EventPublisher
from worker.middleware import Call, Job, Middleware, chain, overriding
from worker.outcomes import CANCELLED, Outcome, Retries, failed
from worker.progress import ProgressThrottle, progress_report

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 300.0


class Runner:
    """Handles deliveries of tasks: one call of ``handle`` per message.

    ``call`` runs the handler inside ``middleware`` (outermost first; by default only
    :class:`Retries`, which some middleware must provide: it decides failed attempts)."""

    def __init__(
        self,
        registry: Registry,
        publisher: EventPublisher,
        cancelled: CancelledTasks,
        call: Call,
        start_event_delay: float,
        progress_interval: float = 0.0,
        middleware: Sequence[Middleware] | None = None,
    ) -> None:
        layers = list(middleware) if middleware is not None else [Retries()]
        self._progress_interval = progress_interval
        self._registry = registry
        self._publisher = publisher
        self._cancelled = cancelled
        self._call = chain(layers, call)
        self._deciders = [m.outcome for m in overriding(layers, "outcome")]
        self._event_hooks = [m.after_event for m in overriding(layers, "after_event")]
        self._start_event_delay = start_event_delay
        self._publishing = Beats(LEASE_BEAT)
        self.shutting_down = False

    async def handle(self, msg: Msg) -> None:
        """Processes one message to an ack, nak or term."""
        try:
            message = events_pb2.TaskMessage.FromString(msg.data)
        except DecodeError:
            log.error("dropping a malformed task message on %s", msg.subject)
            await msg.term()
            return
        run_attempt = delivery_count(msg)
        attempt = message.attempt_offset + run_attempt
        task_id_var.set(message.task_id)
        task_type_var.set(message.type)
        attempt_var.set(attempt)
        span = tracing.consumer_span(
            f"run {message.type}",
            msg.headers,
            {
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
        """Settles at once what needs no handler, else runs the attempt."""
        if await self._cancelled.is_cancelled(message.task_id):
            log.debug("cancelled before it started")
            await self._settle(msg, message, attempt, CANCELLED)
            return
        task_type = self._registry.get(message.type)
        if task_type is None:
            log.error("no handler for type %s here; handing it back", message.type)
            await msg.nak(delay=5)
            return
        max_attempts = message.max_attempts or task_type.max_attempts
        if run_attempt > max_attempts:
            text = (
                f"the worker running attempt {attempt - 1} stopped before finishing, "
                "and no attempts are left"
            )
            await self._settle(msg, message, attempt, failed(attempt, "worker_lost", text))
            return
        started = AttemptStart(
            lambda time: self._record(
                msg, message, attempt, time=time, started=events_pb2.Started()
            ),
            self._start_event_delay,
        )
        try:
            await started.begin()
            await self._run(msg, message, task_type, started, attempt, max_attempts)
        finally:
            started.cancel()

    async def _run(
        self,
        msg: Msg,
        message: events_pb2.TaskMessage,
        task_type: TaskType,
        started: AttemptStart,
        attempt: int,
        max_attempts: int,
    ) -> None:
        """Runs the chain, its progress reports coalesced, then records the outcome."""

        async def send_progress(current: int, total: int, text: str) -> None:
            report = progress_report(current, total, text)
            await started.now()  # a watcher sees the task running before its progress
            progressed = events_pb2.Progressed(progress=report)
            await self._record(msg, message, attempt, progressed=progressed)

        throttle = ProgressThrottle(send_progress, self._progress_interval)
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
        try:
            try:
                outcome = Outcome("completed", result=await self._call(job))
            except Exception as exc:
                outcome = self._decide(job, exc)
            await throttle.flush()  # the final progress is recorded before the outcome
            start_time = await started.outcome_start()
            await self._settle(msg, message, attempt, outcome, start_time)
        finally:
            throttle.close()

    def _decide(self, job: Job, error: Exception) -> Outcome:
        """The first middleware's decision on a failed attempt."""
        for decide in self._deciders:
            outcome = decide(job, error)
            if outcome is not None:
                return outcome
        return failed(job.ctx.attempt, type(error).__name__, "no middleware decided")

    async def _settle(
        self,
        msg: Msg,
        message: events_pb2.TaskMessage,
        attempt: int,
        outcome: Outcome,
        start_time: Timestamp | None = None,
    ) -> None:
        """Records the outcome's event, then acks, naks or terminates the message."""
        event = outcome.event
        body: Any
        if event == "completed":
            body = events_pb2.Completed(result=outcome.result)
        elif event == "cancelled":
            body = events_pb2.Cancelled()
        elif event == "retrying":
            when = timestamp(now() + dt.timedelta(seconds=outcome.delay))
            body = events_pb2.Retrying(error=outcome.error, next_attempt_time=when)
        else:
            body = events_pb2.Failed(error=outcome.error)
        await self._record(msg, message, attempt, start_time=start_time, **{event: body})
        error = outcome.error
        if event == "retrying":
            assert error is not None
            await msg.nak(delay=max(outcome.delay, 0.001))
            log.debug("retrying in %.2fs after %s: %s", outcome.delay, error.type, error.message)
        elif event == "failed":
            assert error is not None
            await msg.term()  # only now: the dead-letter event is recorded
            log.warning("failed for good: %s: %s", error.type, error.message)
        else:
            await msg.ack()
            log.debug(event)

    async def _record(
        self,
        msg: Msg,
        message: events_pb2.TaskMessage,
        attempt: int,
        *,
        time: Timestamp | None = None,
        start_time: Timestamp | None = None,
        **kind: Any,
    ) -> None:
        """Publishes an event of this delivery, then tells the middleware it was recorded.

        The publisher retries while JetStream does not take it (worker.events'
        RECORD_PATIENCE), and the task's lease is kept meanwhile: without this, every
        delivery during a leader election of a few seconds would be given up and
        redelivered, spending the task's attempts (or running its handler again) although
        nothing failed but NATS. The common case is one await: the lease is only renewed
        when a publish takes longer than LEASE_BEAT."""
        publishing = self._publishing
        publishing.hold(msg)
        try:
            await self._publisher.publish(
                message, attempt, time=time, start_time=start_time, **kind
            )
        finally:
            publishing.release(msg)
        for hook in self._event_hooks:
            if start_time is not None:  # the outcome carries its attempt's start
                hook(message, "started")
            for name in kind:
                hook(message, name)
