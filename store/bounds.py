"""Keeping every message a client receives under CONVEYOR_MAX_RESPONSE_BYTES.

Clients in most languages refuse messages over 4 MiB by default, and one oversized task
must not make a read, a page or a watch fail. A task that does not fit gets its result
abridged, marked with a reference to GetTaskPayload (``result.payload``); a page that
does not fit ends early, its token pointing after the last task it holds.
"""

from __future__ import annotations

import datetime as dt

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.payloads import abridge, abridge_input, describe, input_reference
from store.convert import omit_payloads
from store.pagination import Cursor, encode_token

PAGE_OVERHEAD = 512
"""Bytes kept free in a page for its token and the framing of its tasks."""
TASK_FRAMING = 8
"""Tag and length prefix of one task in a page, at most."""


def omitted(task: tasks_pb2.Task) -> tasks_pb2.Task:
    """The task without its result's image bytes (a copy when there were any), marked
    with a reference to the complete result."""
    if not (task.HasField("result") and task.result.image_processing.image) and not (
        task.HasField("input") and task.input.image_processing.image
    ):
        return task
    slim = tasks_pb2.Task()
    slim.CopyFrom(task)
    return omit_payloads(slim)


def bounded(task: tasks_pb2.Task, limit: int) -> tasks_pb2.Task:
    """The task when it serializes to at most ``limit`` bytes, else a copy that does: its
    input (FULL view) and result abridged, the larger first, each left out if that is not
    enough, then its oldest attempt errors dropped."""
    if task.ByteSize() <= limit:
        return task
    slim = tasks_pb2.Task()
    slim.CopyFrom(task)
    if slim.input.ByteSize() > slim.result.ByteSize():
        _bound_input(slim, limit)
    if slim.HasField("result") and slim.ByteSize() > limit:
        payload = slim.result.payload
        if not slim.result.HasField("payload"):
            payload = describe(slim.result.SerializeToString())
        others = slim.ByteSize() - slim.result.ByteSize()
        slim.result.CopyFrom(abridge(slim.result, payload, max(limit - others, 0)))
    _bound_input(slim, limit)
    errors = slim.attempt_errors
    while len(errors) > 1 and slim.ByteSize() > limit:
        del errors[: max(1, len(errors) // 4)]
    return slim


def _bound_input(task: tasks_pb2.Task, limit: int) -> None:
    """Abridges the task's input in place while the task is over ``limit`` bytes: its
    large fields left out, then the typed input, ``input.payload`` describing all of it."""
    if not task.HasField("input") or task.ByteSize() <= limit:
        return
    task.input.CopyFrom(abridge_input(task.input, input_reference(task.input)))
    kind = task.input.WhichOneof("input")
    if kind is not None and task.ByteSize() > limit:
        task.input.ClearField(kind)


def fit_page(
    tasks: list[tasks_pb2.Task], token: str, limit: int
) -> tuple[list[tasks_pb2.Task], str]:
    """The longest head of a page of tasks that fits in ``limit`` bytes (at least one
    task), and the token of the page after it."""
    budget = limit - PAGE_OVERHEAD
    used = 0
    for count, task in enumerate(tasks):
        used += task.ByteSize() + TASK_FRAMING
        if used > budget and count > 0:
            last = tasks[count - 1]
            created = last.create_time.ToDatetime(tzinfo=dt.UTC)
            return tasks[:count], encode_token(Cursor(created, last.id))
    return tasks, token
