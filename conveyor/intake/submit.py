"""Accepting tasks: type lookup, idempotency keys and the two durable publishes.

A task is accepted once two JetStream publishes are acknowledged, sent together: its
``submitted`` event on EVENTS, which the store turns into the task's row, and the task
itself on TASKS (or, for a delayed task, a message schedule that puts it there at its
time). Two streams give no order between them; the store parks a worker's event that
overtakes its task's ``submitted`` (store.parking). The ``submitted`` events of a batch,
and of unary submits arriving while another is in flight (conveyor.intake.groups), share
``TaskEvents`` messages. If the gateway dies between the two, the client got no answer and
the store may hold a PENDING task that is in no stream; the scheduler's reconciliation
fails it as lost, and ``conveyor retry`` runs it from the stored input. Every message, and
its id, is made by ``conveyor.messages``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from nats.js import JetStreamContext
from nats.js.errors import APIError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from conveyor import messages, subjects, tracing
from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from conveyor.auth.namespaces import namespace_metadata
from conveyor.auth.principal import DEFAULT_NAMESPACE, current_namespace
from conveyor.errors import InvalidArgument, ResourceExhausted, Unavailable
from conveyor.ids import new_task_id
from conveyor.intake.admission import Admission
from conveyor.intake.catalog import TypeCatalog
from conveyor.intake.checks import unknown_type
from conveyor.intake.groups import SubmitGroups
from conveyor.intake.quotas import Quotas
from conveyor.messages import PUBLISH_TIMEOUT
from conveyor.payloads import INPUT_CONTENT_TYPE, PayloadStore, abridge_input, input_name
from conveyor.publish import AckedPublisher
from conveyor.tasks import (
    now,
    seconds,
    task_input_of,
    task_type_of,
    timestamp,
    timestamp_micros,
)

log = logging.getLogger(__name__)

SCHEDULE_LABEL = "schedule"
PUBLISH_WINDOW = 512
"""Publishes in flight at once for a batch (two per task): pipelined, but bounded."""
STREAM_FULL = (10077, 10023)
"""JetStream's refusals for want of room: a stream at its limit (``maximum messages
exceeded``, ``maximum bytes exceeded``), its storage full (``insufficient resources``)."""


@dataclass(frozen=True)
class Accepted:
    """A task accepted for queueing (by a submit or a schedule's tick)."""

    task: tasks_pb2.Task
    deduplicated: bool = False


@dataclass(frozen=True)
class _Prepared:
    task: tasks_pb2.Task
    message: events_pb2.TaskMessage
    retry_policy: events_pb2.RetryPolicy


def _run_at(options: tasks_pb2.TaskOptions) -> dt.datetime | None:
    if options.HasField("run_at"):
        when = options.run_at.ToDatetime(tzinfo=dt.UTC)
    elif options.HasField("delay") and seconds(options.delay) > 0:
        when = now() + dt.timedelta(seconds=seconds(options.delay))
    else:
        return None
    return when if when > now() else None


def idempotency_bucket_key(key: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """KV keys have a small alphabet, so the client's key is stored by its hash, in its
    namespace: the same key in two namespaces names two tasks. The default namespace's
    keys are the bare hash, as before namespaces, so keys stored then still match; a
    namespace is a DNS label (no dot), so ``<namespace>.<hash>`` never equals one."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    return digest if namespace == DEFAULT_NAMESPACE else f"{namespace}.{digest}"


async def _bounded(awaitable: Awaitable[Any]) -> Any:
    # A rejected request can leave its reply pending forever: every wait is bounded.
    async with asyncio.timeout(PUBLISH_TIMEOUT):
        return await awaitable


def task_finder(
    store: tasks_pb2_grpc.TaskServiceStub,
) -> Callable[[str], Awaitable[tasks_pb2.Task | None]]:
    """Looks a task up in the store, in the current namespace: the task, or None when it
    does not exist there."""

    async def find(task_id: str) -> tasks_pb2.Task | None:
        request = tasks_pb2.GetTaskRequest(task_id=task_id)
        try:
            response = await store.GetTask(request, timeout=10, metadata=namespace_metadata())
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        task: tasks_pb2.Task = response.task
        return task

    return find


class Submitter:
    """Turns validated submit requests into durably queued tasks."""

    def __init__(
        self,
        js: JetStreamContext,
        catalog: TypeCatalog,
        idempotency: KeyValue,
        find_task: Any,
        publisher: AckedPublisher | None = None,
        inputs: PayloadStore | None = None,
        inline_bytes: int = 0,
        admission: Admission | None = None,
        quotas: Quotas | None = None,
        source: str = subjects.GATEWAY,
    ) -> None:
        self._quotas = quotas  # the gateway's per-namespace quotas; the scheduler has none
        self._source = source  # the role publishing the submits: the gateway or the scheduler
        self._inputs = inputs  # large inputs go there when set (the claim check)
        self._inline_bytes = inline_bytes
        self._admission = admission
        self._publisher = publisher if publisher is not None else messages.publisher(js)
        self._groups = SubmitGroups(self._publisher, source)
        self._catalog = catalog
        self._idempotency = idempotency
        self._find_task = find_task  # async (task_id) -> Task | None, asks the store

    async def submit(
        self, requests: list[tuple[str, tasks_pb2.SubmitTaskRequest]], schedule_id: str = ""
    ) -> list[Accepted]:
        """Accepts (field prefix, request) pairs in the current namespace; all are checked
        before anything is sent. Tasks created by a periodic schedule carry its id, also as
        the label ``schedule``."""
        prepared = [await self._prepare(prefix, request) for prefix, request in requests]
        if schedule_id:
            for item in prepared:
                item.task.schedule_id = schedule_id
                item.task.labels[SCHEDULE_LABEL] = schedule_id
        namespace = current_namespace()
        if self._quotas is not None:
            await self._quotas.admit(namespace, len(prepared))
        try:
            fresh, results = await self._admit_and_publish(prepared)
        except BaseException:
            if self._quotas is not None:
                self._quotas.release(namespace, len(prepared))
            raise
        for index, item in fresh:
            results[index] = Accepted(item.task)
        return [r for r in results if r is not None]

    async def _admit_and_publish(
        self, prepared: list[_Prepared]
    ) -> tuple[list[tuple[int, _Prepared]], list[Accepted | None]]:
        """Checks the queue limits, then publishes (conveyor.intake.admission)."""
        sizes = [(item.task.type, item.message.ByteSize()) for item in prepared]
        if self._admission is not None:
            await self._admission.admit(sizes)
        try:
            return await self._publish_fresh(prepared)
        except BaseException:
            if self._admission is not None:
                self._admission.release(sizes)
            raise

    async def _publish_fresh(
        self, prepared: list[_Prepared]
    ) -> tuple[list[tuple[int, _Prepared]], list[Accepted | None]]:
        """Publishes the tasks whose idempotency key (if any) is new; the others are
        answered with their existing task."""
        results: list[Accepted | None] = [None] * len(prepared)
        fresh: list[tuple[int, _Prepared]] = []
        for index, item in enumerate(prepared):
            existing = await self._claim_idempotency_key(item)
            if existing is not None:
                results[index] = existing
            else:
                fresh.append((index, item))
        for _, item in fresh:
            await self._check_in_input(item)
        await self._publish_all([item for _, item in fresh])
        return fresh, results

    async def _prepare(self, prefix: str, request: tasks_pb2.SubmitTaskRequest) -> _Prepared:
        task_type = task_type_of(request)
        spec = await self._catalog.get(task_type)
        if spec is None:
            raise InvalidArgument.for_fields([unknown_type(request, prefix)])
        options = request.options
        created = timestamp_micros()
        task_id = new_task_id(created.seconds * 1000 + created.nanos // 1_000_000)
        max_attempts = options.max_attempts or spec.max_attempts or 3
        has_timeout = options.HasField("timeout") and seconds(options.timeout) > 0
        timeout = options.timeout if has_timeout else spec.timeout
        priority = options.priority or tasks_pb2.TASK_PRIORITY_NORMAL
        run_at = _run_at(options)
        task = tasks_pb2.Task(
            id=task_id,
            type=task_type,
            state=tasks_pb2.TASK_STATE_SCHEDULED if run_at else tasks_pb2.TASK_STATE_PENDING,
            max_attempts=max_attempts,
            priority=priority,
            idempotency_key=options.idempotency_key,
            timeout=timeout,
            create_time=created,
            update_time=created,
            version=1,
            namespace=current_namespace(),
            # The submit call's span is current here: the task's whole life is its trace.
            trace_id=tracing.current_trace_id(),
        )
        task.labels.update(options.labels)  # cheaper than a dict passed to the constructor
        if run_at:
            task.run_at.CopyFrom(timestamp(run_at))
        message = messages.task_message(
            task, task_input_of(request), spec.retry_policy, max_attempts
        )
        return _Prepared(task, message, spec.retry_policy)

    async def _check_in_input(self, item: _Prepared) -> None:
        """Puts an input larger than the inline limit in the object store and sends an
        abridged one referring to it, so queued tasks and events stay small."""
        task_input = item.message.input
        if self._inputs is None or task_input.ByteSize() <= self._inline_bytes:
            return
        name = input_name(item.task.id)
        try:
            payload = await asyncio.wait_for(
                self._inputs.put(name, task_input.SerializeToString(), INPUT_CONTENT_TYPE),
                PUBLISH_TIMEOUT * 4,
            )
        except Exception as exc:
            raise Unavailable(f"JetStream did not store the task's input: {exc}") from exc
        item.message.input.CopyFrom(abridge_input(task_input, payload))

    async def _claim_idempotency_key(self, item: _Prepared) -> Accepted | None:
        key = item.task.idempotency_key
        if not key:
            return None
        bucket_key = idempotency_bucket_key(key, item.task.namespace)
        try:
            await _bounded(self._idempotency.create(bucket_key, item.task.id.encode()))
            return None
        except KeyWrongLastSequenceError:
            pass
        except TimeoutError as exc:
            raise Unavailable("the idempotency bucket did not answer; retry the submit") from exc
        entry = await _bounded(self._idempotency.get(bucket_key))
        existing_id = (entry.value or b"").decode()
        existing = await self._find_task(existing_id)
        if existing is not None:
            return Accepted(existing, deduplicated=True)
        # The first submit claimed the key but died before publishing: finish its work
        # under the same id, so both callers end up with one task.
        log.warning("idempotency key of task %s has no task; publishing it now", existing_id)
        item.task.id = existing_id
        item.message.task_id = existing_id
        return None

    async def _publish_all(self, items: list[_Prepared]) -> None:
        # The `submitted` events of several tasks share few EVENTS messages (one stored
        # message and one acknowledgement per batch instead of per task).
        events = [
            messages.submitted_event(item.task, item.message, item.retry_policy) for item in items
        ]
        try:
            if len(items) == 1:  # with the submits of other callers (conveyor.intake.groups)
                queued = messages.queued_message(items[0].task, items[0].message)
                await self._groups.publish(events[0], queued)
                return
            batches = messages.submitted_batches(self._source, events, self._groups.max_bytes())
            outgoing = [message for message, _ in batches]
            outgoing += [messages.queued_message(item.task, item.message) for item in items]
            for start in range(0, len(outgoing), PUBLISH_WINDOW):
                await self._publisher.publish_all(outgoing[start : start + PUBLISH_WINDOW])
        except (TimeoutError, OSError) as exc:
            raise Unavailable(f"JetStream did not acknowledge the task: {exc}") from exc
        except APIError as exc:
            if exc.err_code in STREAM_FULL:
                raise ResourceExhausted(
                    f"JetStream refused the task: {exc.description}; retry once workers "
                    "have drained the queue"
                ) from exc
            raise Unavailable(f"JetStream refused the task: {exc}") from exc
        except Exception as exc:
            if type(exc).__module__.startswith("nats"):
                raise Unavailable(f"JetStream refused the task: {exc}") from exc
            raise
