"""The task type registry (the ``conveyor_types`` KV bucket) as a submit sees it, in the
gateway and in the scheduler.

Workers write a TaskTypeSpec per type they serve when they start; entries outlive the
workers, so a known type is accepted while every worker is momentarily down, and a type
nobody ever registered is refused at submit instead of being queued forever.
"""

from __future__ import annotations

import asyncio
import logging

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from conveyor import buckets
from conveyor.api.events.v1 import events_pb2
from conveyor.lifecycle import cancel_and_wait

log = logging.getLogger(__name__)


class TypeCatalog:
    """Task type specs by name, kept current by a KV watch."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self._specs: dict[str, events_pb2.TaskTypeSpec] = {}
        self._watch_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Loads every entry and follows later changes."""
        self._watch_task = asyncio.create_task(self._follow(), name="type-catalog")

    async def stop(self) -> None:
        if self._watch_task is not None:
            await cancel_and_wait(self._watch_task)

    async def _follow(self) -> None:
        await buckets.follow(self._kv, self._changed)

    async def _changed(self, name: str, value: bytes | None) -> None:
        if value is None:
            self._specs.pop(name, None)
        else:
            self._remember(name, value)

    def _remember(self, name: str, value: bytes) -> events_pb2.TaskTypeSpec | None:
        spec = events_pb2.TaskTypeSpec()
        try:
            spec.ParseFromString(value)
        except Exception:
            log.error("type registry entry %r is not a TaskTypeSpec; ignored", name)
            return None
        self._specs[name] = spec
        return spec

    async def get(self, name: str) -> events_pb2.TaskTypeSpec | None:
        """The spec of a type, asking the bucket directly when the watch has not seen it."""
        spec = self._specs.get(name)
        if spec is not None:
            return spec
        try:
            entry = await self._kv.get(name)
        except KeyNotFoundError:
            return None
        except Exception as exc:
            log.warning("type registry lookup of %r failed: %s", name, exc)
            return None
        return self._remember(name, entry.value) if entry.value else None

    def names(self) -> list[str]:
        """Every type seen so far, sorted."""
        return sorted(self._specs)
