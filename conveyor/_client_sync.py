"""The blocking client: :class:`AsyncClient` driven on an event loop of its own thread.

One loop in one daemon thread per client keeps the gRPC channel on the loop that made
it (grpc.aio channels cannot move between loops) and works from any thread, inside or
outside a running loop, which ``asyncio.run`` per call would not.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import contextlib
import datetime as dt
import sys
import threading
from collections.abc import AsyncIterator, Coroutine, Generator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar, Unpack, cast

import grpc

from conveyor._client_async import PURGE_TIMEOUT, AsyncClient
from conveyor._client_builders import EnumArg, OptionArgs, Seconds
from conveyor._client_channel import WatchPolicy
from conveyor.api.auth.v1 import auth_pb2
from conveyor.api.queues.v1 import queues_pb2
from conveyor.api.schedules.v1 import schedules_pb2
from conveyor.api.tasks.v1 import tasks_pb2

T = TypeVar("T")

CLOSE_TIMEOUT = 5.0
"""Seconds to wait for an abandoned stream to close before moving on."""


class _LoopThread:
    """An event loop running forever in a daemon thread, so scripts exit without close()."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="conveyor-client", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            # Ctrl-C in the caller must not leave the call running on the loop.
            future.cancel()
            raise

    def iterate(self, updates: AsyncIterator[T]) -> Generator[T, None, None]:
        async def step() -> tuple[bool, T | None]:
            try:
                return True, await anext(updates)
            except StopAsyncIteration:
                return False, None

        async def close() -> None:
            aclose = getattr(updates, "aclose", None)
            if aclose is not None:
                await aclose()

        try:
            while True:
                more, item = self.run(step())
                if not more:
                    return
                yield cast(T, item)
        finally:
            self._close_soon(close())

    def _close_soon(self, coro: Coroutine[Any, Any, None]) -> None:
        """Ends an iterator's stream, waiting a little at most.

        An abandoned iterator is finalised by the garbage collector in any thread (the
        loop's own included) or while the interpreter exits, when this daemon thread no
        longer runs: waiting there would hang forever.
        """
        if self.loop.is_closed():
            coro.close()
            return
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        if sys.is_finalizing() or threading.current_thread() is self._thread:
            return
        # A step cancelled by Ctrl-C may still be unwinding (RuntimeError); it ends alone.
        with contextlib.suppress(RuntimeError, concurrent.futures.CancelledError, TimeoutError):
            future.result(timeout=CLOSE_TIMEOUT)

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.run(self.loop.shutdown_asyncgens())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class SyncScheduleQueueMixin:
    """The blocking schedule and queue methods of :class:`Client`; see
    :class:`ScheduleQueueMixin`."""

    _loop: _LoopThread
    _async: AsyncClient

    def create_schedule(
        self,
        schedule_id: str,
        request_template: tasks_pb2.SubmitTaskRequest,
        *,
        cron: str | None = None,
        interval: Seconds | None = None,
        time_zone: str = "",
        overlap: EnumArg = "skip",
        catch_up: EnumArg = "skip",
        description: str = "",
    ) -> schedules_pb2.Schedule:
        """Creates a schedule submitting ``request_template`` on every tick; returns it."""
        coro = self._async.create_schedule(
            schedule_id,
            request_template,
            cron=cron,
            interval=interval,
            time_zone=time_zone,
            overlap=overlap,
            catch_up=catch_up,
            description=description,
        )
        return self._loop.run(coro)

    def get_schedule(self, schedule_id: str) -> schedules_pb2.Schedule:
        """The schedule with this id."""
        return self._loop.run(self._async.get_schedule(schedule_id))

    def list_schedules(self) -> list[schedules_pb2.Schedule]:
        """Every schedule, ordered by id."""
        return self._loop.run(self._async.list_schedules())

    def pause_schedule(self, schedule_id: str) -> schedules_pb2.Schedule:
        """Stops a schedule creating tasks until resumed."""
        return self._loop.run(self._async.pause_schedule(schedule_id))

    def resume_schedule(self, schedule_id: str) -> schedules_pb2.Schedule:
        """Resumes a paused schedule from its next tick."""
        return self._loop.run(self._async.resume_schedule(schedule_id))

    def delete_schedule(self, schedule_id: str) -> None:
        """Deletes a schedule; the tasks it created are kept."""
        self._loop.run(self._async.delete_schedule(schedule_id))

    def trigger_schedule(self, schedule_id: str) -> tasks_pb2.Task:
        """Creates one task from the schedule now."""
        return self._loop.run(self._async.trigger_schedule(schedule_id))

    def list_queues(self) -> list[queues_pb2.Queue]:
        """Every registered task type's queue."""
        return self._loop.run(self._async.list_queues())

    def pause_queue(self, task_type: str) -> queues_pb2.Queue:
        """Stops tasks of a type from starting."""
        return self._loop.run(self._async.pause_queue(task_type))

    def resume_queue(self, task_type: str) -> queues_pb2.Queue:
        """Starts tasks of a paused type again."""
        return self._loop.run(self._async.resume_queue(task_type))

    def set_queue_limits(
        self, task_type: str, *, max_concurrency: int = 0, max_per_second: float = 0.0
    ) -> queues_pb2.Queue:
        """Sets a type's cluster-wide limits, both at once; 0 removes a limit."""
        coro = self._async.set_queue_limits(
            task_type, max_concurrency=max_concurrency, max_per_second=max_per_second
        )
        return self._loop.run(coro)


class SyncKeysMixin:
    """The blocking API key methods of :class:`Client`; see :class:`KeysMixin`."""

    _loop: _LoopThread
    _async: AsyncClient

    def create_key(
        self,
        namespace: str,
        role: str | int,
        *,
        ttl: Seconds | None = None,
        description: str = "",
    ) -> auth_pb2.CreateKeyResponse:
        """Makes an API key; the response's ``api_key`` is its only copy."""
        coro = self._async.create_key(namespace, role, ttl=ttl, description=description)
        return self._loop.run(coro)

    def list_keys(self, namespace: str = "") -> list[auth_pb2.ApiKey]:
        """Every API key (of ``namespace`` if given); no secrets."""
        return self._loop.run(self._async.list_keys(namespace))

    def revoke_key(self, key_id: str) -> auth_pb2.ApiKey:
        """Revokes an API key by its id."""
        return self._loop.run(self._async.revoke_key(key_id))


class Client(SyncScheduleQueueMixin, SyncKeysMixin):
    """A blocking client with the methods of :class:`AsyncClient`; iterators are plain.

    The arguments are :class:`AsyncClient`'s, ``credentials`` for TLS, ``api_key`` and
    ``namespace`` included.

    >>> with Client("127.0.0.1:50051") as client:  # doctest: +SKIP
    ...     task = client.submit_text("Hello", transforms=["upper"])
    ...     for update in client.watch(task.id):
    ...         print(update.state)
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        timeout: float | None = 30.0,
        watch_policy: WatchPolicy | None = None,
        channel_args: Sequence[tuple[str, Any]] = (),
        credentials: grpc.ChannelCredentials | None = None,
        api_key: str | None = None,
        namespace: str | None = None,
    ) -> None:
        self._loop = _LoopThread()
        self._async = AsyncClient(
            target,
            timeout=timeout,
            watch_policy=watch_policy,
            channel_args=channel_args,
            credentials=credentials,
            api_key=api_key,
            namespace=namespace,
        )
        self.target = self._async.target

    def submit(self, request: tasks_pb2.SubmitTaskRequest) -> tasks_pb2.Task:
        """Queues a task built by one of the builders; see :meth:`AsyncClient.submit`."""
        return self._loop.run(self._async.submit(request))

    def submit_response(self, request: tasks_pb2.SubmitTaskRequest) -> tasks_pb2.SubmitTaskResponse:
        """Like :meth:`submit`, with ``deduplicated``."""
        return self._loop.run(self._async.submit_response(request))

    def submit_many(
        self, requests: Iterable[tasks_pb2.SubmitTaskRequest]
    ) -> builtins.list[tasks_pb2.Task]:
        """Queues many tasks in one call, all or none."""
        return self._loop.run(self._async.submit_many(builtins.list(requests)))

    def submit_text(
        self,
        text: str,
        *,
        transforms: Iterable[EnumArg] = (),
        top_words: int = 0,
        **opts: Unpack[OptionArgs],
    ) -> tasks_pb2.Task:
        """Queues a text_processing task."""
        coro = self._async.submit_text(
            text, transforms=builtins.list(transforms), top_words=top_words, **opts
        )
        return self._loop.run(coro)

    def submit_summarization(
        self, text: str, *, max_sentences: int = 0, **opts: Unpack[OptionArgs]
    ) -> tasks_pb2.Task:
        """Queues an ai_summarization task."""
        coro = self._async.submit_summarization(text, max_sentences=max_sentences, **opts)
        return self._loop.run(coro)

    def submit_batch(
        self,
        items: Iterable[str],
        operation: EnumArg,
        *,
        chunk_size: int = 0,
        **opts: Unpack[OptionArgs],
    ) -> tasks_pb2.Task:
        """Queues a batch_processing task."""
        coro = self._async.submit_batch(
            builtins.list(items), operation, chunk_size=chunk_size, **opts
        )
        return self._loop.run(coro)

    def submit_image(
        self,
        image: bytes,
        operations: Iterable[tasks_pb2.ImageOperation] = (),
        *,
        output_format: EnumArg | None = None,
        **opts: Unpack[OptionArgs],
    ) -> tasks_pb2.Task:
        """Queues an image_processing task."""
        coro = self._async.submit_image(
            image, builtins.list(operations), output_format=output_format, **opts
        )
        return self._loop.run(coro)

    def submit_custom(
        self, task_type: str, payload: Mapping[str, Any] | None = None, **opts: Unpack[OptionArgs]
    ) -> tasks_pb2.Task:
        """Queues a task of a user-registered type."""
        return self._loop.run(self._async.submit_custom(task_type, payload, **opts))

    def get(
        self, task_id: str, *, omit_payloads: bool = False, with_input: bool = False
    ) -> tasks_pb2.Task:
        """The task with this id (with its input when ``with_input``)."""
        coro = self._async.get(task_id, omit_payloads=omit_payloads, with_input=with_input)
        return self._loop.run(coro)

    def list(
        self,
        *,
        states: Iterable[EnumArg] = (),
        type: str = "",
        labels: Mapping[str, str] | None = None,
        page_size: int = 0,
        page_token: str = "",
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
    ) -> tasks_pb2.ListTasksResponse:
        """One page of tasks, newest first."""
        coro = self._async.list(
            states=builtins.list(states),
            type=type,
            labels=labels,
            page_size=page_size,
            page_token=page_token,
            created_after=created_after,
            created_before=created_before,
        )
        return self._loop.run(coro)

    def iter_tasks(
        self,
        *,
        states: Iterable[EnumArg] = (),
        type: str = "",
        labels: Mapping[str, str] | None = None,
        page_size: int = 0,
    ) -> Generator[tasks_pb2.Task, None, None]:
        """Every matching task, newest first, fetching pages as it goes."""
        updates = self._async.iter_tasks(
            states=builtins.list(states), type=type, labels=labels, page_size=page_size
        )
        return self._loop.iterate(updates)

    def watch(
        self, task_id: str, *, after_version: int = 0, omit_payloads: bool = False
    ) -> Generator[tasks_pb2.Task, None, None]:
        """The task's state, then every change until a terminal state, resuming on breaks."""
        return self._loop.iterate(
            self._async.watch(task_id, after_version=after_version, omit_payloads=omit_payloads)
        )

    def watch_tasks(
        self,
        *,
        states: Iterable[EnumArg] = (),
        type: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> Generator[tasks_pb2.Task, None, None]:
        """Every later change of the matching tasks (see AsyncClient.watch_tasks)."""
        return self._loop.iterate(
            self._async.watch_tasks(states=builtins.list(states), type=type, labels=labels)
        )

    def payload(self, task_id: str) -> Generator[bytes, None, None]:
        """The task's complete serialized result in chunks (see AsyncClient.payload)."""
        return self._loop.iterate(self._async.payload(task_id))

    def result(self, task_id: str) -> tasks_pb2.TaskResult:
        """The task's complete result, however large (see AsyncClient.result)."""
        return self._loop.run(self._async.result(task_id))

    def wait(self, task_id: str, *, timeout: float | None = None) -> tasks_pb2.Task:
        """The task once it reaches a terminal state."""
        return self._loop.run(self._async.wait(task_id, timeout=timeout))

    def cancel(self, task_id: str) -> tasks_pb2.Task:
        """Cancels a task."""
        return self._loop.run(self._async.cancel(task_id))

    def retry(self, task_id: str) -> tasks_pb2.Task:
        """Runs a FAILED or CANCELLED task again."""
        return self._loop.run(self._async.retry(task_id))

    def delete(self, task_id: str) -> None:
        """Deletes a finished task and its history."""
        self._loop.run(self._async.delete(task_id))

    def purge(
        self,
        *,
        states: Iterable[EnumArg] = (),
        type: str = "",
        older_than: float = 0.0,
        timeout: float = PURGE_TIMEOUT,
    ) -> int:
        """Deletes the finished tasks that match; how many."""
        return self._loop.run(
            self._async.purge(states=states, type=type, older_than=older_than, timeout=timeout)
        )

    def stats(
        self, *, window: float = 3600.0, type: str = "", top_errors: int = 5, bucket: float = 0
    ) -> tasks_pb2.GetTaskStatsResponse:
        """Failure-rate analysis of the tasks submitted in the last ``window`` seconds."""
        coro = self._async.stats(window=window, type=type, top_errors=top_errors, bucket=bucket)
        return self._loop.run(coro)

    def close(self) -> None:
        """Closes the channel and stops the client's thread; safe to call twice."""
        if not self._loop.loop.is_closed():
            self._loop.run(self._async.close())
        self._loop.stop()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
