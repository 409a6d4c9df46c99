"""Payloads too large for a message: inputs read back from the object store, results put
there (or refused past a hard limit)."""

from __future__ import annotations

from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.errors import NonRetryable, NotFound
from conveyor.payloads import PayloadStore, abridge, result_name


async def restore_input(store: PayloadStore, message: events_pb2.TaskMessage) -> None:
    """Replaces an abridged input of ``message`` by the complete one, in place."""
    if not message.input.HasField("payload"):
        return
    try:
        data = await store.read(message.input.payload)
    except NotFound as exc:
        # Running it again cannot bring the input back.
        raise NonRetryable(f"the task's input is no longer stored: {exc}") from exc
    message.input.ParseFromString(data)


class ResultTooLarge(NonRetryable):
    """Raised when a handler's result is larger than CONVEYOR_MAX_RESULT_BYTES."""


class ResultCheck:
    """Makes a handler's result fit an event: one over ``inline_bytes`` is stored in the
    object store and replaced by an abridged copy referring to it; one over ``max_bytes``
    fails the task (running it again would only make the same result)."""

    def __init__(self, store: PayloadStore, inline_bytes: int, max_bytes: int) -> None:
        self._store = store
        self._inline_bytes = inline_bytes
        self._max_bytes = max_bytes

    async def __call__(
        self, task_id: str, attempt: int, result: tasks_pb2.TaskResult
    ) -> tasks_pb2.TaskResult:
        """The result to publish for this attempt."""
        size = result.ByteSize()
        if size <= self._inline_bytes:
            return result
        if size > self._max_bytes:
            raise ResultTooLarge(
                f"the result is {size:,} bytes, over the limit of {self._max_bytes:,} bytes "
                "(CONVEYOR_MAX_RESULT_BYTES)"
            )
        data = result.SerializeToString()
        payload = await self._store.put(result_name(task_id, attempt), data)
        return abridge(result, payload, self._inline_bytes)
