"""Reconciliation: no task stays unfinished forever.

A task the store holds as unfinished should be in the TASKS stream (queued, delayed, or in
flight with a worker). If a process died between two steps it may be in no stream at all;
then nothing would ever finish it. Every round, the reconciler looks at unfinished tasks
that have not changed for a while, asks the stream whether it still holds each one (the
task id is part of its subject), and fails the lost ones with a clear error, after which
``conveyor retry`` runs them again from the input the store kept.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import grpc
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from conveyor import messages, subjects
from conveyor.api.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from conveyor.auth.namespaces import ALL_NAMESPACES
from conveyor.auth.principal import METADATA_NAMESPACE
from conveyor.tasks import from_timestamp, now

log = logging.getLogger(__name__)

EVERY_NAMESPACE = ((METADATA_NAMESPACE, ALL_NAMESPACES),)
"""A lost task is lost whatever its namespace: reconciliation reads them all."""

UNFINISHED = [
    tasks_pb2.TASK_STATE_PENDING,
    tasks_pb2.TASK_STATE_SCHEDULED,
    tasks_pb2.TASK_STATE_RUNNING,
    tasks_pb2.TASK_STATE_RETRYING,
]
LOST_MESSAGE = (
    "the task was in no queue (a process died between accepting it and queueing it); "
    "run it again with `conveyor retry`"
)


class Reconciler:
    """Finds unfinished tasks that no stream holds and fails them with a clear error."""

    def __init__(
        self,
        js: JetStreamContext,
        store: tasks_pb2_grpc.TaskServiceStub,
        interval: float = 60.0,
        quiet_for: float = 120.0,
        max_pages: int = 20,
        page_size: int = 1000,
    ) -> None:
        self._js = js
        self._publisher = messages.publisher(js)
        self._store = store
        self.interval = interval
        self.quiet_for = quiet_for
        self.max_pages = max_pages
        self.page_size = page_size
        self._token = ""
        """Where the sweep goes on next round: a keyset cursor into the listing, so with
        more unfinished tasks than one round reads, every one is still reached."""

    async def run(self) -> None:
        """Reconciles every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                lost = await self.reconcile_once()
                if lost:
                    log.warning("reconciliation failed %d lost tasks", lost)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("reconciliation round failed: %s", exc)

    async def reconcile_once(self) -> int:
        """One round of at most ``max_pages`` pages of unfinished tasks, newest first,
        going on from where the round before stopped; returns how many lost tasks were
        failed. A sweep over all of them thus takes ceil(unfinished / (max_pages *
        page_size)) rounds, and the next sweep starts again from the newest."""
        cutoff = now() - dt.timedelta(seconds=self.quiet_for)
        lost = 0
        for _ in range(self.max_pages):
            page = await self._page(self._token)
            for task in page.tasks:
                if from_timestamp(task.update_time) < cutoff and not await self._queued(task):
                    lost += await self._fail_if_unchanged(task)
            self._token = page.next_page_token
            if not self._token:
                break
        return lost

    async def _page(self, token: str) -> tasks_pb2.ListTasksResponse:
        request = tasks_pb2.ListTasksRequest(
            states=UNFINISHED, page_size=self.page_size, page_token=token
        )
        try:
            page: tasks_pb2.ListTasksResponse = await self._store.ListTasks(
                request, timeout=30, metadata=EVERY_NAMESPACE
            )
        except grpc.aio.AioRpcError as err:
            if token and err.code() == grpc.StatusCode.INVALID_ARGUMENT:
                self._token = ""  # a cursor the store no longer takes: sweep again from the top
            raise
        return page

    async def _queued(self, task: tasks_pb2.Task) -> bool:
        candidates = [
            subjects.task_subject(task.type, task.priority, task.id),
            subjects.delayed_subject(task.id),
        ]
        for subject in candidates:
            try:
                await self._js.get_last_msg(subjects.STREAM_TASKS, subject)
                return True
            except NotFoundError:
                continue
        return False

    async def _fail_if_unchanged(self, task: tasks_pb2.Task) -> int:
        # The task may have finished a moment ago (its worker acked after publishing the
        # outcome, and the store has not applied it yet): look again before acting.
        await asyncio.sleep(1.0)
        try:
            fresh = (
                await self._store.GetTask(
                    tasks_pb2.GetTaskRequest(task_id=task.id), timeout=10, metadata=EVERY_NAMESPACE
                )
            ).task
        except grpc.aio.AioRpcError:
            return 0
        if fresh.version != task.version:
            return 0
        await self._publisher.publish(*messages.lost(task, LOST_MESSAGE))
        log.warning("task %s was in no stream; failed it as lost", task.id)
        return 1
