"""The store's side of TaskService: reads, watches, cancel and re-drive.

Submits go through the gateway; the store answers them UNIMPLEMENTED. Every method sees
only the namespace its call is made in (bound per call from the caller's metadata,
conveyor.auth.namespaces): another namespace's task is NOT_FOUND, exactly as a task that
does not exist, and lists, stats and purges hold only the namespace's tasks.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from conveyor import messages, subjects
from conveyor.api.store.v1 import quotas_pb2, quotas_pb2_grpc
from conveyor.api.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from conveyor.auth.namespaces import ALL_NAMESPACES, visible
from conveyor.auth.principal import current_namespace
from conveyor.errors import FailedPrecondition, NotFound, ResourceExhausted, Unavailable
from conveyor.intake.reads import (
    created_range,
    validate_get,
    validate_list,
    validate_purge,
    validate_stats,
    validate_task_id,
    validate_watch_tasks,
)
from conveyor.messages import PUBLISH_TIMEOUT
from conveyor.payloads import PayloadStore, chunked, describe
from conveyor.publish import AckedPublisher
from conveyor.tasks import STATE_NAMES, is_terminal, now
from store.bounds import PAGE_OVERHEAD, bounded, fit_page, omitted
from store.repository import TaskRepository
from store.retention import Candidate, Purger
from store.stats import task_stats
from store.watch import WATCH_QUEUE_SIZE, Subscription, TaskFilter, WatchHub

log = logging.getLogger(__name__)

Context = Any  # grpc.aio.ServicerContext; grpc ships no type information
CATCH_UP_TIMEOUT = 5.0
_STREAM_INFO = f"$JS.API.STREAM.INFO.{subjects.STREAM_EVENTS}"
REDRIVABLE = (tasks_pb2.TASK_STATE_FAILED, tasks_pb2.TASK_STATE_CANCELLED)


class StoreService(tasks_pb2_grpc.TaskServiceServicer):
    """Reads from the database; writes only by publishing events it then applies."""

    def __init__(
        self,
        repository: TaskRepository,
        hub: WatchHub,
        nc: NATS,
        js: JetStreamContext,
        cancelled: KeyValue,
        purger: Purger,
        payloads: PayloadStore,
        max_response_bytes: int,
    ) -> None:
        self._purger = purger
        self._repository = repository
        self._payloads = payloads
        self._max_response_bytes = max_response_bytes
        self._hub = hub
        self._nc = nc
        self._js = js
        self._cancelled = cancelled

    @functools.cached_property
    def _publisher(self) -> AckedPublisher:
        # Made at first use: tests build the service without a connection to publish on.
        return messages.publisher(self._js, self._nc)

    async def _find(
        self, task_id: str, omit_payloads: bool = False, with_input: bool = False
    ) -> tasks_pb2.Task:
        """The task, waiting for the events published so far when it is not known yet:
        a GetTask right after SubmitTask sees the task. Every method reaches a task by id
        through here, so this is where another namespace's task is not found."""
        task = await self._get_visible(task_id, omit_payloads, with_input)
        if task is None:
            await self._catch_up()
            task = await self._get_visible(task_id, omit_payloads, with_input)
        if task is None:
            raise NotFound(f"task {task_id} does not exist")
        return task

    async def _get_visible(
        self, task_id: str, omit_payloads: bool, with_input: bool
    ) -> tasks_pb2.Task | None:
        # Another namespace's task is answered as an unknown one, after the same wait, so
        # neither the answer nor its timing tells that the id exists.
        task = await self._repository.get(task_id, omit_payloads, with_input)
        return task if task is not None and visible(task.namespace) else None

    async def _catch_up(self) -> bool:
        """Waits until every event published so far is applied (read your writes).

        As EventApplier.catch_up, asking JetStream for the EVENTS stream's last sequence,
        but with a plain request whose answer only ``state.last_seq`` is read from: nats-py's
        stream_info builds the whole StreamInfo (config, state, cluster) on every call.
        """
        try:
            reply = await self._nc.request(_STREAM_INFO, b"", timeout=CATCH_UP_TIMEOUT)
            info = json.loads(reply.data)
            last = int(info["state"]["last_seq"])
        except Exception as exc:
            log.warning("stream info failed: %s", exc)
            return False
        return await self._hub.wait_applied(last, CATCH_UP_TIMEOUT)

    async def GetTask(
        self, request: tasks_pb2.GetTaskRequest, context: Context
    ) -> tasks_pb2.GetTaskResponse:
        full = validate_get(request)
        task = await self._find(request.task_id, request.omit_payloads, with_input=full)
        return tasks_pb2.GetTaskResponse(task=bounded(task, self._max_response_bytes))

    async def ListTasks(
        self, request: tasks_pb2.ListTasksRequest, context: Context
    ) -> tasks_pb2.ListTasksResponse:
        page_size = validate_list(request)
        created_after, created_before = created_range(request)
        await self._catch_up()
        tasks, token = await self._repository.list(
            states=list(request.states),
            task_type=request.type,
            labels=dict(request.labels),
            page_size=page_size,
            page_token=request.page_token,
            namespace=_namespace_filter(),
            created_after=created_after,
            created_before=created_before,
        )
        limit = self._max_response_bytes
        tasks = [bounded(task, limit - PAGE_OVERHEAD) for task in tasks]
        tasks, token = fit_page(tasks, token, limit)
        return tasks_pb2.ListTasksResponse(tasks=tasks, next_page_token=token)

    async def WatchTask(
        self, request: tasks_pb2.WatchTaskRequest, context: Context
    ) -> AsyncIterator[tasks_pb2.WatchTaskResponse]:
        async for task in self.updates(request):
            yield tasks_pb2.WatchTaskResponse(task=task)

    async def WatchTasks(
        self, request: tasks_pb2.WatchTasksRequest, context: Context
    ) -> AsyncIterator[tasks_pb2.WatchTasksResponse]:
        """Every later change of a matching task in the call's namespace, from the hub's
        fan-out (no database read per change). The initial metadata goes out once the
        feed is in place: a caller that waits for it and then lists misses nothing."""
        validate_watch_tasks(request)
        wanted = TaskFilter(
            _namespace_filter(), frozenset(request.states), request.type, dict(request.labels)
        )
        feed = self._hub.feed(wanted)
        limit = self._max_response_bytes
        try:
            await context.send_initial_metadata(())
            while True:
                task = await feed.queue.get()
                if feed.lagged:
                    raise ResourceExhausted(
                        f"this watch fell {WATCH_QUEUE_SIZE} changes behind; list the tasks "
                        "and watch again"
                    )
                yield tasks_pb2.WatchTasksResponse(task=bounded(task, limit))
        finally:
            self._hub.close(feed)

    async def updates(
        self,
        request: tasks_pb2.WatchTaskRequest,
        listener: Callable[[Subscription], None] | None = None,
    ) -> AsyncIterator[tasks_pb2.Task]:
        """What WatchTask streams for ``request``, as tasks: the current state (unless
        ``after_version`` is given), then every later version, ending after a terminal
        one. Also what each watch of the gateway's one WatchTasks call runs (store.mux),
        which gives a ``listener`` that takes the changes while the watch waits
        (``Subscription.take``, each through ``as_watched``)."""
        validate_task_id(request.task_id)
        subscription = self._hub.subscribe(request.task_id)
        subscription.listener = listener
        try:
            async for task in self._watch(subscription, request.after_version):
                yield self.as_watched(task, request.omit_payloads)
        finally:
            self._hub.unsubscribe(subscription)

    def as_watched(self, task: tasks_pb2.Task, omit_payloads: bool) -> tasks_pb2.Task:
        """A version of a task as a watch streams it. The hub hands the same Task to every
        watcher of it: neither call changes it."""
        return bounded(omitted(task) if omit_payloads else task, self._max_response_bytes)

    async def _watch(
        self, subscription: Subscription, after_version: int
    ) -> AsyncIterator[tasks_pb2.Task]:
        task_id = subscription.task_id
        current = await self._find(task_id, omit_payloads=True)
        subscription.last = after_version
        if after_version == 0:
            yield current
            subscription.last = current.version
        if is_terminal(current.state) and subscription.last >= current.version:
            return
        while True:
            # Cleared before the history is read: a change committed during the read that
            # the read missed sets it again (store.follow signals changes only so).
            subscription.lagged.clear()
            # Anything between `last` and what the queue holds comes from the history, so a
            # watcher that lagged or reconnected misses nothing.
            for task in await self._repository.history(task_id, subscription.last):
                yield task
                subscription.last = task.version
                if is_terminal(task.state):
                    return
            if subscription.deleted:
                raise NotFound(f"task {task_id} was deleted")
            while not subscription.lagged.is_set():
                change = subscription.take()
                if change is None:
                    if subscription.lagged.is_set():
                        break  # a gap: fill it from the history
                    # Nothing to read: a listener may take what comes meanwhile.
                    subscription.wakeup.clear()
                    subscription.parked = True
                    try:
                        await subscription.wakeup.wait()
                    finally:
                        subscription.parked = False
                    if subscription.finished:
                        return
                    continue
                yield change
                if is_terminal(change.state):
                    return

    async def GetTaskPayload(
        self, request: tasks_pb2.GetTaskPayloadRequest, context: Context
    ) -> AsyncIterator[tasks_pb2.GetTaskPayloadResponse]:
        validate_task_id(request.task_id)
        task = await self._find(request.task_id)
        if not task.HasField("result"):
            raise FailedPrecondition(
                f"task {task.id} has no result; it is {STATE_NAMES[task.state]}"
            )
        payload = task.result.payload
        if task.result.HasField("payload") and payload.name:
            chunks = self._payloads.chunks(payload)
        else:
            data = task.result.SerializeToString()
            payload = describe(data)
            chunks = _chunks_of(data)
        first = True
        async for chunk in chunks:
            if first:
                yield tasks_pb2.GetTaskPayloadResponse(payload=payload, data=chunk)
                first = False
            else:
                yield tasks_pb2.GetTaskPayloadResponse(data=chunk)
        if first:  # an empty result: the reference still says so
            yield tasks_pb2.GetTaskPayloadResponse(payload=payload)

    async def CancelTask(
        self, request: tasks_pb2.CancelTaskRequest, context: Context
    ) -> tasks_pb2.CancelTaskResponse:
        validate_task_id(request.task_id)
        task = await self._find(request.task_id, omit_payloads=True)
        if is_terminal(task.state):
            raise FailedPrecondition(
                f"task {task.id} is already {STATE_NAMES[task.state]}; only unfinished tasks "
                "can be cancelled"
            )
        try:
            # The marker first: a worker fetching the task from now on skips it.
            await asyncio.wait_for(self._cancelled.put(task.id, b"1"), PUBLISH_TIMEOUT)
            ack = await self._publisher.publish_sequence(*messages.cancel_requested(task))
            await self._nc.publish(subjects.CANCEL_SUBJECT, task.id.encode())
            if task.state != tasks_pb2.TASK_STATE_RUNNING:
                await self._purge_queued(task)  # it never runs: take it out of the queue
        except (TimeoutError, OSError) as exc:
            raise Unavailable(f"could not record the cancel: {exc}") from exc
        await self._hub.wait_applied(ack, CATCH_UP_TIMEOUT)
        log.info("cancel requested for task %s", task.id)
        task = await self._find(task.id, omit_payloads=True)
        return tasks_pb2.CancelTaskResponse(task=bounded(task, self._max_response_bytes))

    async def RetryTask(
        self, request: tasks_pb2.RetryTaskRequest, context: Context
    ) -> tasks_pb2.RetryTaskResponse:
        validate_task_id(request.task_id)
        await self._find(request.task_id, omit_payloads=True)  # NotFound, after catching up
        found = await self._repository.get_for_redrive(request.task_id)
        if found is None:
            raise NotFound(f"task {request.task_id} does not exist")
        task, task_input, retry_policy, per_run_attempts = found
        if task.state not in REDRIVABLE:
            raise FailedPrecondition(
                f"task {task.id} is {STATE_NAMES[task.state]}; only failed or cancelled tasks "
                "can be retried"
            )
        offset = task.attempt
        message = messages.task_message(task, task_input, retry_policy, per_run_attempts, offset)
        try:
            # A message of the previous run may still wait in the queue (a task cancelled
            # while RETRYING keeps its delayed redelivery): remove it, so only the new run
            # executes and attempt numbers never collide.
            await self._purge_queued(task)
            await asyncio.wait_for(self._cancelled.delete(task.id), PUBLISH_TIMEOUT)
            ack = await self._publisher.publish_sequence(*messages.redriven(task, per_run_attempts))
            await self._publisher.publish(*messages.rerun_message(task, message))
        except (TimeoutError, OSError) as exc:
            raise Unavailable(f"could not queue the task again: {exc}") from exc
        await self._hub.wait_applied(ack, CATCH_UP_TIMEOUT)
        log.info("task %s queued again after %d attempts", task.id, offset)
        task = await self._find(task.id, omit_payloads=True)
        return tasks_pb2.RetryTaskResponse(task=bounded(task, self._max_response_bytes))

    async def GetTaskStats(
        self, request: tasks_pb2.GetTaskStatsRequest, context: Context
    ) -> tasks_pb2.GetTaskStatsResponse:
        window, top_errors, bucket = validate_stats(request)
        await self._catch_up()
        until = now()
        return await task_stats(
            self._repository.engine,
            until - window,
            request.type,
            top_errors,
            _namespace_filter(),
            bucket,
            until,
        )

    async def DeleteTask(
        self, request: tasks_pb2.DeleteTaskRequest, context: Context
    ) -> tasks_pb2.DeleteTaskResponse:
        validate_task_id(request.task_id)
        task = await self._find(request.task_id, omit_payloads=True)
        candidate = Candidate(task.id, task.idempotency_key, task.namespace)
        if not is_terminal(task.state) or not await self._delete(candidate):
            task = await self._find(request.task_id, omit_payloads=True)  # re-driven meanwhile
            raise FailedPrecondition(
                f"task {task.id} is {STATE_NAMES[task.state]}; only finished tasks can be "
                "deleted (cancel it first)"
            )
        log.info("task %s deleted", task.id)
        return tasks_pb2.DeleteTaskResponse()

    async def _delete(self, candidate: Candidate) -> bool:
        try:
            return bool(await self._purger.remove([candidate], "delete"))
        except (TimeoutError, OSError) as exc:
            raise Unavailable(f"could not release the idempotency key: {exc}") from exc

    async def PurgeTasks(
        self, request: tasks_pb2.PurgeTasksRequest, context: Context
    ) -> tasks_pb2.PurgeTasksResponse:
        states, older_than = validate_purge(request)
        await self._catch_up()
        before = now() - older_than if older_than else None
        try:
            count = await self._purger.purge(
                "purge", before, states, request.type, namespace=_namespace_filter()
            )
        except (TimeoutError, OSError) as exc:
            raise Unavailable(f"could not release idempotency keys: {exc}") from exc
        log.info("purged %d finished tasks", count)
        return tasks_pb2.PurgeTasksResponse(purged_count=count)

    async def _purge_queued(self, task: tasks_pb2.Task) -> None:
        """Removes the task's queued or delayed message, if any (its id is in the subject)."""
        for subject in (
            subjects.task_subject(task.type, task.priority, task.id),
            subjects.delayed_subject(task.id),
        ):
            await asyncio.wait_for(
                self._js.purge_stream(subjects.STREAM_TASKS, subject=subject), PUBLISH_TIMEOUT
            )


class NamespaceCounts(quotas_pb2_grpc.NamespaceCountServiceServicer):
    """Counts for the gateway's per-namespace quotas (conveyor.intake.quotas)."""

    def __init__(self, repository: TaskRepository) -> None:
        self._repository = repository

    async def CountUnfinishedTasks(
        self, request: quotas_pb2.CountUnfinishedTasksRequest, context: Context
    ) -> quotas_pb2.CountUnfinishedTasksResponse:
        count = await self._repository.count_unfinished(current_namespace())
        return quotas_pb2.CountUnfinishedTasksResponse(count=count)


def _namespace_filter() -> str | None:
    """The namespace a query is limited to: the call's, or None for every one."""
    namespace = current_namespace()
    return None if namespace == ALL_NAMESPACES else namespace


async def _chunks_of(data: bytes) -> AsyncIterator[bytes]:
    for chunk in chunked(data):
        yield chunk
