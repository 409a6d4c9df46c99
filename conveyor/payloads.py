"""Large results and inputs kept out of messages: a claim check in JetStream's Object Store.

A worker whose result serializes to more than ``CONVEYOR_PAYLOAD_INLINE_BYTES`` puts the
whole serialized ``TaskResult`` in the ``conveyor_payloads`` object store and publishes an
abridged result carrying a :class:`Payload` reference instead (name, size, SHA-256). The
store streams the complete result to clients in chunks (``GetTaskPayload``), from the
object store or, for a result it keeps inline, from its own copy. The gateway does the
same with a large input, which the worker reads back before it runs the handler.

>>> store = PayloadStore(await jetstream.object_store(js, settings))  # doctest: +SKIP
>>> ref = await store.put(result_name(task_id, 1), result.SerializeToString())  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterator

from nats.js.api import ObjectMeta, ObjectMetaOptions
from nats.js.errors import NotFoundError, ObjectNotFoundError
from nats.js.object_store import OBJ_CHUNKS_PRE_TEMPLATE, ObjectStore

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.errors import Internal, NotFound

CHUNK_BYTES = 128 * 1024
"""Bytes per object store chunk and per GetTaskPayload response."""
CHUNK_TIMEOUT = 10.0
"""How long reading one chunk from the object store may take before the read fails."""
CONTENT_TYPE = "application/x-protobuf; messageType=conveyor.api.tasks.v1.TaskResult"
INPUT_CONTENT_TYPE = "application/x-protobuf; messageType=conveyor.api.tasks.v1.TaskInput"


def result_name(task_id: str, attempt: int) -> str:
    """The object name of the result of one attempt: attempts never overwrite each other, so
    a repeated attempt cannot change the bytes a recorded reference describes."""
    return f"{task_id}/result/{attempt}"


def input_name(task_id: str) -> str:
    """The object name of a task's input."""
    return f"{task_id}/input"


def task_object_names(task_id: str, attempts: int) -> list[str]:
    """Every name the task's payloads can have after ``attempts`` attempts."""
    results = [result_name(task_id, attempt) for attempt in range(1, attempts + 1)]
    return [input_name(task_id), *results]


def describe(data: bytes, name: str = "", content_type: str = CONTENT_TYPE) -> tasks_pb2.Payload:
    """The reference to ``data``, a serialized TaskResult (or TaskInput), stored as ``name``."""
    return tasks_pb2.Payload(
        name=name,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        content_type=content_type,
    )


_INPUT_BULK = {
    "text_processing": ("text",),
    "ai_summarization": ("text",),
    "batch_processing": ("items",),
    "image_processing": ("image",),
    "custom": ("payload", "json"),
}
"""The fields of each input that can be large."""


def input_reference(task_input: tasks_pb2.TaskInput) -> tasks_pb2.Payload:
    """What describes the complete input: the reference an abridged input carries (its
    object), else the description of its bytes as they are."""
    if task_input.HasField("payload"):
        return task_input.payload
    return describe(task_input.SerializeToString(), content_type=INPUT_CONTENT_TYPE)


def abridge_input(
    task_input: tasks_pb2.TaskInput, payload: tasks_pb2.Payload
) -> tasks_pb2.TaskInput:
    """A copy of ``task_input`` without its large field, carrying ``payload``."""
    slim = tasks_pb2.TaskInput()
    slim.CopyFrom(task_input)
    kind = slim.WhichOneof("input")
    if kind is not None:
        for field in _INPUT_BULK[kind]:
            getattr(slim, kind).ClearField(field)
    slim.payload.CopyFrom(payload)
    return slim


def abridge(
    result: tasks_pb2.TaskResult, payload: tasks_pb2.Payload, limit: int
) -> tasks_pb2.TaskResult:
    """A copy of ``result`` without its large fields, carrying ``payload``; the typed
    result is left out entirely when what remains still serializes to more than ``limit``."""
    slim = tasks_pb2.TaskResult()
    slim.CopyFrom(result)
    kind = slim.WhichOneof("result")
    if kind == "image_processing":
        slim.image_processing.ClearField("image")
    elif kind == "text_processing":
        for output in slim.text_processing.transforms:
            output.ClearField("text")
    slim.payload.CopyFrom(payload)
    if kind is not None and slim.ByteSize() > limit:
        slim.ClearField(kind)
    return slim


def chunked(data: bytes, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """``data`` in pieces of at most ``size`` bytes."""
    view = memoryview(data)
    for start in range(0, len(data), size):
        yield bytes(view[start : start + size])


class PayloadStore:
    """Puts, reads (in chunks) and deletes payloads in the ``conveyor_payloads`` bucket."""

    def __init__(self, objects: ObjectStore) -> None:
        self._objects = objects

    async def put(
        self, name: str, data: bytes, content_type: str = CONTENT_TYPE
    ) -> tasks_pb2.Payload:
        """Stores ``data`` (a serialized TaskResult) as ``name`` and returns its reference."""
        options = ObjectMetaOptions(max_chunk_size=CHUNK_BYTES)
        await self._objects.put(name, data, meta=ObjectMeta(name=name, options=options))
        return describe(data, name, content_type)

    async def chunks(self, payload: tasks_pb2.Payload) -> AsyncIterator[bytes]:
        """The stored bytes of ``payload``, chunk by chunk, checked against its size and
        SHA-256 (raises Internal at the end when they differ)."""
        try:
            info = await self._objects.get_info(payload.name)
        except (ObjectNotFoundError, NotFoundError):
            raise NotFound(f"payload {payload.name} is no longer stored") from None
        if not info.size:
            return
        js = self._objects._js  # nats-py keeps the bucket's context and name
        subject = OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=self._objects._name, obj=info.nuid)
        # An ordered consumer delivers the chunks in order without acks, as nats-py's own
        # get() does, but here each chunk is passed on as it comes rather than gathered.
        sub = await js.subscribe(subject, ordered_consumer=True)
        digest = hashlib.sha256()
        received = 0
        try:
            while received < info.size:
                msg = await sub.next_msg(timeout=CHUNK_TIMEOUT)
                digest.update(msg.data)
                received += len(msg.data)
                yield msg.data
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if received != payload.size_bytes or digest.hexdigest() != payload.sha256:
            raise Internal(
                f"payload {payload.name} is {received} bytes that do not match its reference "
                f"({payload.size_bytes} bytes, sha256 {payload.sha256})"
            )

    async def read(self, payload: tasks_pb2.Payload) -> bytes:
        """All the stored bytes of ``payload``, checked as :meth:`chunks` checks them."""
        data = bytearray()
        async for chunk in self.chunks(payload):
            data += chunk
        return bytes(data)

    async def delete(self, name: str) -> bool:
        """Deletes the object ``name``; False when there was none."""
        try:
            await self._objects.delete(name)
        except (ObjectNotFoundError, NotFoundError):
            return False
        return True

    async def delete_task(self, task_id: str, attempts: int) -> int:
        """Deletes every payload of a task that made ``attempts`` attempts (when it is
        purged); returns how many there were."""
        deleted = 0
        for name in task_object_names(task_id, attempts):
            deleted += await self.delete(name)
        return deleted
