"""The task type registry's only writer: workers ask the store to register their types
(``conveyor.control.register``), since their NATS credentials cannot write the bucket, and
the store writes what passes the registry's own rules."""

from __future__ import annotations

import datetime as dt
import logging
import math

from google.protobuf.message import DecodeError
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.kv import KeyValue

from conveyor import subjects
from conveyor.api.events.v1 import events_pb2
from conveyor.intake.checks import duration_error
from conveyor.intake.validation import MAX_ATTEMPTS, MAX_DELAY

log = logging.getLogger(__name__)

MAX_DESCRIPTION_CHARS = 1000
MAX_MULTIPLIER = 100.0


def spec_problem(spec: events_pb2.TaskTypeSpec) -> str | None:
    """What makes a registration one no worker's registry (conveyor.registry) makes."""
    if not subjects.TASK_TYPE_PATTERN.match(spec.type):
        return f"type {spec.type[:64]!r} must match {subjects.TASK_TYPE_PATTERN.pattern}"
    if not 1 <= spec.max_attempts <= MAX_ATTEMPTS:
        return f"max_attempts must be between 1 and {MAX_ATTEMPTS}"
    durations = {
        "timeout": spec.timeout,
        "retry_policy.initial_delay": spec.retry_policy.initial_delay,
        "retry_policy.max_delay": spec.retry_policy.max_delay,
    }
    for name, value in durations.items():
        if problem := duration_error(value, MAX_DELAY):
            return f"{name} {problem}"
    multiplier = spec.retry_policy.multiplier
    if not (math.isfinite(multiplier) and 0 <= multiplier <= MAX_MULTIPLIER):
        return f"retry_policy.multiplier must be between 0 and {MAX_MULTIPLIER}"
    if len(spec.description) > MAX_DESCRIPTION_CHARS:
        return f"description must be at most {MAX_DESCRIPTION_CHARS} characters"
    return None


class TypeRegistrar:
    """Answers workers' registrations: checks each spec and writes it to the bucket."""

    def __init__(self, nc: NATS, types: KeyValue) -> None:
        self._nc = nc
        self._types = types
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(
            subjects.REGISTER_SUBJECT, queue=subjects.REGISTER_QUEUE, cb=self._on_request
        )

    async def stop(self) -> None:
        if self._sub is not None and not self._nc.is_closed:
            await self._sub.unsubscribe()

    async def _on_request(self, msg: Msg) -> None:
        try:
            spec = events_pb2.TaskTypeSpec.FromString(msg.data)
            problem = spec_problem(spec)
        except DecodeError:
            problem = "not a TaskTypeSpec"
        if problem is not None:
            log.warning("refused a task type registration: %s", problem)
            await _answer(msg, subjects.REGISTER_REFUSED + problem.encode())
            return
        if not spec.HasField("register_time"):
            spec.register_time.FromDatetime(dt.datetime.now(dt.UTC))
        try:
            await self._types.put(spec.type, spec.SerializeToString())
        except Exception as exc:  # NATS away: the worker asks again
            log.warning("registering task type %s failed: %s", spec.type, exc)
            return
        await _answer(msg, b"")


async def _answer(msg: Msg, data: bytes) -> None:
    if msg.reply:
        try:
            await msg.respond(data)
        except Exception as exc:
            log.warning("answering a registration failed: %s", exc)
