"""Every name Conveyor puts on the wire: streams, subjects, consumers and buckets."""

from __future__ import annotations

import datetime as dt
import math
import re

from conveyor.api.tasks.v1 import tasks_pb2

STREAM_TASKS = "TASKS"
"""Work-queue stream holding queued tasks until a worker acks them."""
STREAM_EVENTS = "EVENTS"
"""Limits stream of every task event; the store consumes it in order."""

TASKS_PREFIX = "conveyor.tasks"
EVENTS_PREFIX = "conveyor.events"
DELAYED_PREFIX = "conveyor.delayed"
"""Delayed tasks wait here as NATS message schedules until the server moves them to
their task subject at their time."""
CANCEL_SUBJECT = "conveyor.control.cancel"
"""Core NATS subject: a task id published here stops a running handler (only the store
publishes it)."""
REGISTER_SUBJECT = "conveyor.control.register"
"""Core NATS request subject: a worker sends a TaskTypeSpec here and the store, after
checking it, writes it to the types bucket (workers cannot write the bucket)."""
REGISTER_REFUSED = b"refused: "
"""The start of the store's answer to a registration it refuses; an empty answer is yes."""
REGISTER_QUEUE = "store"
"""The queue group of the stores answering registrations: one answers each."""

GATEWAY = "gateway"
SCHEDULER = "scheduler"
STORE = "store"
WORKER = "worker"
PUBLISHERS = (GATEWAY, SCHEDULER, STORE, WORKER)
"""The service roles, each a NATS user of its own, and the token an event's subject
names its publisher by (NATS permissions let each role publish only its own)."""

STORE_CONSUMER = "store"
"""Durable consumer of EVENTS owned by the store."""

KV_TYPES = "conveyor_types"
"""Registry of task types: key = type, value = TaskTypeSpec."""
KV_IDEMPOTENCY = "conveyor_idempotency"
"""Idempotency keys: key = hash of the client's key, value = task id."""
KV_CANCELLED = "conveyor_cancelled"
"""Cancelled task ids, so a worker skips a cancelled task it fetches."""
KV_QUEUES = "conveyor_queues"
"""Controls of each type's queue: key = type, value = Queue (paused, limits)."""
KV_PERMITS = "conveyor_permits"
"""Cluster-wide flow control: concurrency leases (slots.<type>.<n>) and rate buckets
(rate.<type>)."""
KV_SCHEDULES = "conveyor_schedules"
"""Periodic schedules: key = schedule id, value = Schedule."""
KV_KEYS = "conveyor_keys"
"""API keys: key = key id, value = StoredKey (the key's description and its secret's
SHA-256, never the secret)."""
KV_STORE = "conveyor_store"
"""The store replicas' writer lease: key ``writer``, value its holder and fencing epoch
(store.lease)."""
OBJECT_PAYLOADS = "conveyor_payloads"
"""Object store of large results and inputs (the claim check): names
``<task id>/result/<attempt>`` and ``<task id>/input``."""
KV_BUCKETS = (
    KV_TYPES,
    KV_IDEMPOTENCY,
    KV_CANCELLED,
    KV_QUEUES,
    KV_PERMITS,
    KV_SCHEDULES,
    KV_KEYS,
    KV_STORE,
)
"""Every KV bucket, in the order they are declared."""

HEADER_MSG_ID = "Nats-Msg-Id"
HEADER_EVENT_COUNT = "Conveyor-Events"
"""Header of an EVENTS message holding a ``TaskEvents`` batch: how many events it holds.
A message without it holds one ``TaskEvent``."""
MAX_MESSAGE_METADATA = "conveyor-max-message-bytes"
"""gRPC metadata of the gateway's watch call to the store: the largest message it takes."""

TASK_TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
"""A task type is also a subject token, so it is kept to this alphabet."""

PRIORITY_TOKENS: dict[int, str] = {
    tasks_pb2.TASK_PRIORITY_HIGH: "high",
    tasks_pb2.TASK_PRIORITY_NORMAL: "normal",
    tasks_pb2.TASK_PRIORITY_LOW: "low",
}


def priority_token(priority: int) -> str:
    """The subject token of a priority; unspecified means normal."""
    return PRIORITY_TOKENS.get(priority, "normal")


def task_subject(task_type: str, priority: int, task_id: str) -> str:
    """The subject a task is queued on. The id is part of it so that whether a task is
    still queued can be asked of the stream directly (reconciliation)."""
    return f"{TASKS_PREFIX}.{task_type}.{priority_token(priority)}.{task_id}"


def task_type_filter(task_type: str, priority: str | None = None) -> str:
    """The filter matching queued tasks of one type: of one priority token, or all."""
    if priority is None:
        return f"{TASKS_PREFIX}.{task_type}.>"
    return f"{TASKS_PREFIX}.{task_type}.{priority}.>"


def event_subject(publisher: str, task_type: str) -> str:
    """The subject ``publisher`` (one of PUBLISHERS) puts events of tasks of this type on:
    ``conveyor.events.<publisher>.<type>``."""
    return f"{EVENTS_PREFIX}.{publisher}.{task_type}"


def event_filter(publisher: str) -> str:
    """Every event subject of one publisher (what its NATS user may publish to)."""
    return f"{EVENTS_PREFIX}.{publisher}.>"


LEGACY_PUBLISHER = ""
"""The publisher of an event on the subject before publishers were named
(``conveyor.events.<type>``): nobody may publish there any more, so only events stored
before the upgrade come on it."""


def event_origin(subject: str) -> tuple[str | None, str]:
    """(publisher, task type) of an event subject: LEGACY_PUBLISHER for the old form,
    None for a subject that is neither form."""
    tokens = subject.split(".")
    if ".".join(tokens[:2]) != EVENTS_PREFIX:
        return None, ""
    if len(tokens) == 4 and tokens[3] and tokens[2] in PUBLISHERS:
        return tokens[2], tokens[3]
    if len(tokens) == 3 and tokens[2]:
        return LEGACY_PUBLISHER, tokens[2]
    return None, ""


def worker_consumer(task_type: str, priority: str) -> str:
    """The durable consumer all workers serving a type share, one per priority token."""
    return f"worker_{task_type}_{priority}"


def delayed_subject(task_id: str) -> str:
    """The subject a delayed task waits on until its time."""
    return f"{DELAYED_PREFIX}.{task_id}"


def schedule_headers(when: dt.datetime, target: str) -> dict[str, str]:
    """Headers making a message a one-off NATS schedule that fires at ``when`` (rounded up
    to the next whole second, so a task never starts early)."""
    whole = dt.datetime.fromtimestamp(math.ceil(when.timestamp()), dt.UTC)
    return {
        "Nats-Schedule": "@at " + whole.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Nats-Schedule-Target": target,
    }
