"""The asyncio client: :class:`AsyncClient`, re-exported by :mod:`conveyor.client`."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import datetime as dt
import hashlib
import logging
import os
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Unpack

import grpc
from google.protobuf import duration_pb2

from conveyor import tracing
from conveyor._client_builders import (
    STATES,
    EnumArg,
    OptionArgs,
    ai_summarization,
    batch_processing,
    custom,
    enum_value,
    image_processing,
    text_processing,
)
from conveyor._client_channel import WatchPolicy, channel_options
from conveyor._client_errors import error_from_rpc
from conveyor._client_keys import KeysMixin
from conveyor._client_schedules import ScheduleQueueMixin, StubFactory
from conveyor.api.auth.v1 import auth_pb2, auth_pb2_grpc
from conveyor.api.queues.v1 import queues_pb2, queues_pb2_grpc
from conveyor.api.schedules.v1 import schedules_pb2, schedules_pb2_grpc
from conveyor.api.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from conveyor.auth.principal import METADATA_AUTHORIZATION, METADATA_NAMESPACE
from conveyor.config import ClientSettings
from conveyor.errors import DeadlineExceeded, Internal, Unavailable
from conveyor.tasks import duration, is_terminal, timestamp
from conveyor.tls import client_credentials

log = logging.getLogger(__name__)

PURGE_TIMEOUT = 600.0
"""Seconds a purge may take: it deletes in small batches, so a large one is slow."""

# A server going away mid-stream shows as UNAVAILABLE; CANCELLED reaches a client only
# when the server cancelled (a local cancel raises asyncio.CancelledError instead).
_RESUMABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})

_SERVICES: dict[StubFactory, str] = {
    tasks_pb2_grpc.TaskServiceStub: tasks_pb2.DESCRIPTOR.services_by_name["TaskService"].full_name,
    schedules_pb2_grpc.ScheduleServiceStub: schedules_pb2.DESCRIPTOR.services_by_name[
        "ScheduleService"
    ].full_name,
    queues_pb2_grpc.QueueServiceStub: queues_pb2.DESCRIPTOR.services_by_name[
        "QueueService"
    ].full_name,
    auth_pb2_grpc.AuthServiceStub: auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
}
"""The full name of each service, by its stub: the names of the calls' spans."""
_WATCH_TASK = f"/{_SERVICES[tasks_pb2_grpc.TaskServiceStub]}/WatchTask"
_WATCH_TASKS = f"/{_SERVICES[tasks_pb2_grpc.TaskServiceStub]}/WatchTasks"
_GET_TASK_PAYLOAD = f"/{_SERVICES[tasks_pb2_grpc.TaskServiceStub]}/GetTaskPayload"


def call_metadata(api_key: str, namespace: str) -> tuple[tuple[str, str], ...]:
    """The metadata every call carries: the credentials and the namespace asked for."""
    metadata: list[tuple[str, str]] = []
    if api_key:
        metadata.append((METADATA_AUTHORIZATION, f"Bearer {api_key.strip()}"))
    if namespace:
        metadata.append((METADATA_NAMESPACE, namespace))
    return tuple(metadata)


class AsyncClient(ScheduleQueueMixin, KeysMixin):
    """An asyncio client of the gateway's TaskService, ScheduleService, QueueService and
    AuthService.

    ``target`` is host:port (default: ``CONVEYOR_GATEWAY_ADDR``, else 127.0.0.1:50051);
    ``api_key`` is sent with every call as ``authorization: Bearer <key>`` (default:
    ``CONVEYOR_API_KEY``; a JWT works too), and ``namespace`` asks every call to run in
    that namespace (default: ``CONVEYOR_NAMESPACE``, else the key's own);
    ``timeout`` bounds each unary call in seconds (None: no bound). The channel opens on
    first use, in the running event loop: TLS with ``credentials`` (channel credentials,
    possibly composed with call credentials such as a bearer token for a proxy that
    authenticates callers); else TLS when ``CONVEYOR_TLS_CA`` (a CA file) or
    ``CONVEYOR_TLS=1`` (the system's roots) is set, presenting ``CONVEYOR_TLS_CLIENT_CERT``
    and ``CONVEYOR_TLS_CLIENT_KEY`` when set; else plaintext.

    >>> tls_with_token = grpc.composite_channel_credentials(
    ...     grpc.ssl_channel_credentials(), grpc.access_token_call_credentials("my-token")
    ... )
    >>> client = AsyncClient("conveyor.example.com:443", credentials=tls_with_token)
    >>> client = AsyncClient("127.0.0.1:50051", api_key="cvk_...", namespace="team-a")

    >>> async def example() -> None:
    ...     async with AsyncClient("127.0.0.1:50051") as client:
    ...         task = await client.submit_batch(["1", "2", "3"], "square")
    ...         done = await client.wait(task.id, timeout=60)
    ...         print(done.result.batch_processing.succeeded)
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
        settings = ClientSettings.from_env(os.environ)
        self.target = target or settings.gateway_addr
        self.namespace = settings.namespace if namespace is None else namespace
        self._api_key = settings.api_key if api_key is None else api_key
        self._metadata = call_metadata(self._api_key, self.namespace)
        # Explicit credentials win; else CONVEYOR_TLS_CA / CONVEYOR_TLS=1, else plaintext.
        self._credentials = credentials or client_credentials(settings)
        self.timeout = timeout
        self.watch_policy = watch_policy or WatchPolicy()
        self._extra_args = list(channel_args)
        self._channel_args = [*channel_options(), *channel_args]
        self._channel: grpc.aio.Channel | None = None
        self._stubs: dict[StubFactory, Any] = {}

    def _stub(self, factory: StubFactory = tasks_pb2_grpc.TaskServiceStub) -> Any:
        """The stub of one service, every service sharing the one channel."""
        if self._channel is None:
            # No client interceptors: each call makes its span (tracing.client_call).
            if self._credentials is None:
                self._channel = grpc.aio.insecure_channel(self.target, options=self._channel_args)
            else:
                self._channel = grpc.aio.secure_channel(
                    self.target, self._credentials, options=self._channel_args
                )
        if factory not in self._stubs:
            self._stubs[factory] = factory(self._channel)
        return self._stubs[factory]

    def clone(self) -> AsyncClient:
        """A client with the same target, credentials, namespace and options, on a
        channel of its own (to spread many streams over several connections)."""
        return AsyncClient(
            self.target,
            timeout=self.timeout,
            watch_policy=self.watch_policy,
            channel_args=self._extra_args,
            credentials=self._credentials,
            api_key=self._api_key,
            namespace=self.namespace,
        )

    async def _unary(
        self,
        method: str,
        request: Any,
        factory: StubFactory = tasks_pb2_grpc.TaskServiceStub,
        timeout: float | None = None,
    ) -> Any:
        stub = self._stub(factory)
        timeout = timeout or self.timeout
        try:
            with tracing.client_call(f"/{_SERVICES[factory]}/{method}") as metadata:
                return await getattr(stub, method)(
                    request, timeout=timeout, metadata=metadata + self._metadata
                )
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from exc

    # --- submit ----------------------------------------------------------------------------

    async def submit(self, request: tasks_pb2.SubmitTaskRequest) -> tasks_pb2.Task:
        """Queues a task built by one of the builders; returns it, PENDING or SCHEDULED."""
        return (await self.submit_response(request)).task

    async def submit_response(
        self, request: tasks_pb2.SubmitTaskRequest
    ) -> tasks_pb2.SubmitTaskResponse:
        """Like :meth:`submit`, with ``deduplicated`` telling an idempotency key matched."""
        response: tasks_pb2.SubmitTaskResponse = await self._unary("SubmitTask", request)
        return response

    async def submit_many(
        self, requests: Iterable[tasks_pb2.SubmitTaskRequest]
    ) -> builtins.list[tasks_pb2.Task]:
        """Queues many tasks in one call, all or none; returns them in request order."""
        batch = tasks_pb2.SubmitTasksRequest(requests=builtins.list(requests))
        response: tasks_pb2.SubmitTasksResponse = await self._unary("SubmitTasks", batch)
        return builtins.list(response.tasks)

    async def submit_text(
        self,
        text: str,
        *,
        transforms: Iterable[EnumArg] = (),
        top_words: int = 0,
        **opts: Unpack[OptionArgs],
    ) -> tasks_pb2.Task:
        """Queues a text_processing task. Options as in :func:`options`."""
        return await self.submit(text_processing(text, transforms, top_words, **opts))

    async def submit_summarization(
        self, text: str, *, max_sentences: int = 0, **opts: Unpack[OptionArgs]
    ) -> tasks_pb2.Task:
        """Queues an ai_summarization task."""
        return await self.submit(ai_summarization(text, max_sentences, **opts))

    async def submit_batch(
        self,
        items: Iterable[str],
        operation: EnumArg,
        *,
        chunk_size: int = 0,
        **opts: Unpack[OptionArgs],
    ) -> tasks_pb2.Task:
        """Queues a batch_processing task."""
        return await self.submit(batch_processing(items, operation, chunk_size, **opts))

    async def submit_image(
        self,
        image: bytes,
        operations: Iterable[tasks_pb2.ImageOperation] = (),
        *,
        output_format: EnumArg | None = None,
        **opts: Unpack[OptionArgs],
    ) -> tasks_pb2.Task:
        """Queues an image_processing task; see :func:`resize`, :func:`thumbnail` etc."""
        return await self.submit(image_processing(image, operations, output_format, **opts))

    async def submit_custom(
        self, task_type: str, payload: Mapping[str, Any] | None = None, **opts: Unpack[OptionArgs]
    ) -> tasks_pb2.Task:
        """Queues a task of a user-registered type."""
        return await self.submit(custom(task_type, payload, **opts))

    # --- read ------------------------------------------------------------------------------

    async def get(
        self, task_id: str, *, omit_payloads: bool = False, with_input: bool = False
    ) -> tasks_pb2.Task:
        """The task with this id; ``omit_payloads`` leaves out image bytes, ``with_input``
        adds the task's input (the FULL view)."""
        view = tasks_pb2.TASK_VIEW_FULL if with_input else tasks_pb2.TASK_VIEW_BASIC
        request = tasks_pb2.GetTaskRequest(task_id=task_id, omit_payloads=omit_payloads, view=view)
        response: tasks_pb2.GetTaskResponse = await self._unary("GetTask", request)
        return response.task

    async def payload(self, task_id: str) -> AsyncGenerator[bytes, None]:
        """The task's complete result, serialized, in chunks (GetTaskPayload), however large
        it is; checked against the size and SHA-256 the server announced (Internal if not).

        >>> with open("result.bin", "wb") as f:  # doctest: +SKIP
        ...     async for chunk in client.payload(task_id):
        ...         f.write(chunk)
        """
        request = tasks_pb2.GetTaskPayloadRequest(task_id=task_id)
        expected = tasks_pb2.Payload()
        digest = hashlib.sha256()
        size = 0
        try:
            with tracing.client_call(_GET_TASK_PAYLOAD) as metadata:
                call = self._stub().GetTaskPayload(request, metadata=metadata + self._metadata)
                try:
                    async for response in call:
                        if response.HasField("payload"):
                            expected = response.payload
                        digest.update(response.data)
                        size += len(response.data)
                        yield response.data
                finally:
                    call.cancel()
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from exc
        if size != expected.size_bytes or digest.hexdigest() != expected.sha256:
            raise Internal(
                f"the payload of task {task_id} came as {size} bytes that do not match its "
                f"reference ({expected.size_bytes} bytes, sha256 {expected.sha256})"
            )

    async def result(self, task_id: str) -> tasks_pb2.TaskResult:
        """The task's complete result, including what GetTask leaves out (image bytes,
        transformed texts), read in chunks with :meth:`payload`.

        >>> image = (await client.result(task_id)).image_processing.image  # doctest: +SKIP
        """
        data = bytearray()
        async for chunk in self.payload(task_id):
            data += chunk
        return tasks_pb2.TaskResult.FromString(bytes(data))

    async def list(
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
        """One page of tasks, newest first; pass ``next_page_token`` on for the next page.

        ``states`` take short names ("running") or numbers; results are left out. Only
        tasks created at or after ``created_after`` and before ``created_before`` (aware
        datetimes) when given.
        """
        request = tasks_pb2.ListTasksRequest(
            states=[enum_value(STATES, s, "state") for s in states],  # type: ignore[misc]
            type=type,
            labels=dict(labels or {}),
            page_size=page_size,
            page_token=page_token,
        )
        if created_after is not None:
            request.created_after.CopyFrom(timestamp(created_after))
        if created_before is not None:
            request.created_before.CopyFrom(timestamp(created_before))
        response: tasks_pb2.ListTasksResponse = await self._unary("ListTasks", request)
        return response

    async def iter_tasks(
        self,
        *,
        states: Iterable[EnumArg] = (),
        type: str = "",
        labels: Mapping[str, str] | None = None,
        page_size: int = 0,
    ) -> AsyncGenerator[tasks_pb2.Task, None]:
        """Every matching task, newest first, fetching pages as it goes."""
        wanted = builtins.list(states)
        token = ""
        while True:
            page = await self.list(
                states=wanted, type=type, labels=labels, page_size=page_size, page_token=token
            )
            for task in page.tasks:
                yield task
            token = page.next_page_token
            if not token:
                return

    async def watch(
        self, task_id: str, *, after_version: int = 0, omit_payloads: bool = False
    ) -> AsyncGenerator[tasks_pb2.Task, None]:
        """The task's state now (unless ``after_version`` is given), then every change;
        ``omit_payloads`` leaves out result image bytes.

        Ends after yielding a terminal state. When the stream breaks (UNAVAILABLE, the
        server going away, a stream ending early) it reconnects after the last version
        seen, so no change is missed or repeated; it raises Unavailable once
        :class:`WatchPolicy` gives up.
        """
        seen: int | None = after_version or None
        failures = 0
        while True:
            request = tasks_pb2.WatchTaskRequest(
                task_id=task_id, after_version=seen or 0, omit_payloads=omit_payloads
            )
            try:
                with tracing.client_call(_WATCH_TASK) as metadata:
                    call = self._stub().WatchTask(request, metadata=metadata + self._metadata)
                    try:
                        async for response in call:
                            task: tasks_pb2.Task = response.task
                            if seen is not None and task.version <= seen:
                                continue  # a server resending what we have must not repeat
                            seen, failures = task.version, 0
                            yield task
                            if is_terminal(task.state):
                                return
                    finally:
                        call.cancel()
                reason = "the stream ended before a terminal state"
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _RESUMABLE:
                    raise error_from_rpc(exc) from exc
                reason = f"{exc.code().name}: {exc.details()}"
            failures += 1
            if failures > self.watch_policy.max_reconnects:
                raise Unavailable(f"watch of task {task_id} gave up: {reason}")
            delay = self.watch_policy.backoff(failures)
            log.warning("watch of task %s broke (%s); resuming in %.1fs", task_id, reason, delay)
            await asyncio.sleep(delay)

    async def watch_tasks(
        self,
        *,
        states: Iterable[EnumArg] = (),
        type: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> AsyncGenerator[tasks_pb2.Task, None]:
        """Every later change of the tasks that match (the filters of :meth:`list`), each
        task as of that change, results left out; for dashboards. It never ends by itself.

        Nothing is yielded until the server watches; changes made after that are all
        sent. A multi-task stream cannot resume where it broke, so errors are raised, not
        retried: ResourceExhausted when this reader fell too far behind, Unavailable when
        the server went away. Watch again, then :meth:`list` to catch up.
        """
        request = tasks_pb2.WatchTasksRequest(
            states=[enum_value(STATES, s, "state") for s in states],  # type: ignore[misc]
            type=type,
            labels=dict(labels or {}),
        )
        try:
            with tracing.client_call(_WATCH_TASKS) as metadata:
                call = self._stub().WatchTasks(request, metadata=metadata + self._metadata)
                try:
                    async for response in call:
                        task: tasks_pb2.Task = response.task
                        yield task
                finally:
                    call.cancel()
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from exc

    async def wait(self, task_id: str, *, timeout: float | None = None) -> tasks_pb2.Task:
        """The task once it reaches a terminal state; DeadlineExceeded after ``timeout`` s."""

        async def last() -> tasks_pb2.Task:
            final = tasks_pb2.Task()
            async with contextlib.aclosing(self.watch(task_id)) as updates:
                async for task in updates:
                    final = task
            return final

        try:
            return await asyncio.wait_for(last(), timeout)
        except TimeoutError:
            raise DeadlineExceeded(f"task {task_id} not finished after {timeout}s") from None

    # --- control ---------------------------------------------------------------------------

    async def cancel(self, task_id: str) -> tasks_pb2.Task:
        """Cancels a task: CANCELLED, or RUNNING with cancel_requested until it stops."""
        request = tasks_pb2.CancelTaskRequest(task_id=task_id)
        response: tasks_pb2.CancelTaskResponse = await self._unary("CancelTask", request)
        return response.task

    async def retry(self, task_id: str) -> tasks_pb2.Task:
        """Runs a FAILED or CANCELLED task again with a fresh attempt budget."""
        request = tasks_pb2.RetryTaskRequest(task_id=task_id)
        response: tasks_pb2.RetryTaskResponse = await self._unary("RetryTask", request)
        return response.task

    async def delete(self, task_id: str) -> None:
        """Deletes a finished task and its history; FailedPrecondition while it runs."""
        await self._unary("DeleteTask", tasks_pb2.DeleteTaskRequest(task_id=task_id))

    async def purge(
        self,
        *,
        states: Iterable[EnumArg] = (),
        type: str = "",
        older_than: float = 0.0,
        timeout: float = PURGE_TIMEOUT,
    ) -> int:
        """Deletes the finished tasks in ``states`` (default: every finished state), of
        ``type`` if given, that finished at least ``older_than`` seconds ago; how many."""
        request = tasks_pb2.PurgeTasksRequest(
            states=[enum_value(STATES, s, "state") for s in states],  # type: ignore[misc]
            type=type,
        )
        if older_than:
            request.older_than.FromNanoseconds(round(older_than * 1e9))
        response: tasks_pb2.PurgeTasksResponse = await self._unary(
            "PurgeTasks", request, timeout=timeout
        )
        return response.purged_count

    async def stats(
        self, *, window: float = 3600.0, type: str = "", top_errors: int = 5, bucket: float = 0
    ) -> tasks_pb2.GetTaskStatsResponse:
        """Failure-rate analysis of the tasks submitted in the last ``window`` seconds;
        with a ``bucket`` (seconds), also counts per bucket of the window (``series``)."""
        request = tasks_pb2.GetTaskStatsRequest(
            window=duration_pb2.Duration(seconds=int(window), nanos=int(window % 1 * 1e9)),
            type=type,
            top_errors=top_errors,
        )
        if bucket:
            request.bucket.CopyFrom(duration(bucket))
        response: tasks_pb2.GetTaskStatsResponse = await self._unary("GetTaskStats", request)
        return response

    async def close(self) -> None:
        """Closes the channel; calls in flight are cancelled."""
        if self._channel is not None:
            await self._channel.close()
        self._channel = None
        self._stubs.clear()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
