"""Per-namespace quotas at submit: unfinished tasks, and tasks submitted per second.

A submit past one is refused with RESOURCE_EXHAUSTED naming the quota (its ``CONVEYOR_``
variable, also the subject of the status's ``QuotaFailure``) before anything is published.

Neither costs a round trip per submit. A namespace's unfinished tasks are counted by the
store (``NamespaceCountService``), read at most every ``REFRESH_SECONDS`` per namespace
in the background, plus what this gateway accepted since the reading began, as
conveyor.intake.admission does for the streams: several gateways can together pass the
quota by what they accept within one reading, and tasks whose ``submitted`` event the
store has not applied yet are counted only by the gateway that accepted them.

The submit rate is a token bucket per namespace in each gateway: a quota of N per second
lets each gateway replica accept N tasks a second (bursts of one second's worth), so the
cluster-wide rate is N times the replicas. A bucket shared by every replica would cost a
JetStream round trip per submit.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from conveyor.api.store.v1 import quotas_pb2, quotas_pb2_grpc
from conveyor.auth.principal import METADATA_NAMESPACE
from conveyor.config import NamespaceQuotas
from conveyor.errors import ResourceExhausted
from conveyor.intake.admission import CachedReading
from conveyor.metrics import GatewayMetrics

NAMESPACE_MAX_QUEUED = "CONVEYOR_NAMESPACE_MAX_QUEUED"
NAMESPACE_SUBMITS_PER_SECOND = "CONVEYOR_NAMESPACE_SUBMITS_PER_SECOND"

COUNT_TIMEOUT = 5.0

CountUnfinished = Callable[[str], Awaitable[int]]
"""Reads how many tasks of a namespace are unfinished (asks the store)."""


def unfinished_counter(store: quotas_pb2_grpc.NamespaceCountServiceStub) -> CountUnfinished:
    """Asks the store how many tasks of a namespace are unfinished."""

    async def count(namespace: str) -> int:
        response = await store.CountUnfinishedTasks(
            quotas_pb2.CountUnfinishedTasksRequest(),
            timeout=COUNT_TIMEOUT,
            metadata=((METADATA_NAMESPACE, namespace),),
        )
        return int(response.count)

    return count


@dataclass
class _Queued:
    """A namespace's unfinished tasks as last read, plus what was admitted since."""

    now: int = 0
    since: int = 0


@dataclass
class _Bucket:
    tokens: float
    at: float


class Quotas:
    """Checks each submit against its namespace's quotas before anything is published."""

    def __init__(
        self,
        quotas: NamespaceQuotas,
        count_unfinished: CountUnfinished,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._quotas = quotas
        self._count = count_unfinished
        self._metrics = metrics or GatewayMetrics()
        self._queued: dict[str, _Queued] = {}
        self._readings: dict[str, CachedReading[int]] = {}
        self._buckets: dict[str, _Bucket] = {}

    async def admit(self, namespace: str, count: int) -> None:
        """Counts ``count`` tasks of ``namespace`` as submitted and queued, or raises
        ResourceExhausted naming the quota they would pass (and counts nothing). A count
        the store could not be asked for is not checked."""
        most = self._quotas.queued_limit(namespace)
        if most:
            queued = await self._queued_now(namespace)
            if queued is not None and queued.now + count > most:
                self._refuse(
                    NAMESPACE_MAX_QUEUED,
                    f"namespace {namespace!r} has {queued.now} unfinished tasks: {count} more "
                    f"would pass {NAMESPACE_MAX_QUEUED}={most}; retry once its tasks have run",
                )
        self._take_tokens(namespace, count)
        self._add(namespace, count)

    def release(self, namespace: str, count: int) -> None:
        """Takes admitted tasks off again: their publish failed."""
        self._add(namespace, -count)

    def _add(self, namespace: str, count: int) -> None:
        queued = self._queued.get(namespace)
        if queued is not None:
            queued.now += count
            queued.since += count

    async def _queued_now(self, namespace: str) -> _Queued | None:
        reading = self._readings.get(namespace)
        if reading is None:
            self._queued[namespace] = _Queued()
            reading = self._readings[namespace] = CachedReading(
                functools.partial(self._count, namespace),
                functools.partial(self._apply, namespace),
                functools.partial(self._start, namespace),
            )
        try:
            await reading.ensure()
        except Exception:
            return None  # never read (logged once a minute): the quota cannot be checked
        return self._queued[namespace]

    def _start(self, namespace: str) -> None:
        self._queued[namespace].since = 0

    def _apply(self, namespace: str, unfinished: int) -> None:
        queued = self._queued[namespace]
        queued.now = unfinished + queued.since

    def _take_tokens(self, namespace: str, count: int) -> None:
        rate = self._quotas.rate_limit(namespace)
        if not rate:
            return
        burst = max(rate, 1.0)
        now = time.monotonic()
        bucket = self._buckets.get(namespace)
        if bucket is None:
            bucket = self._buckets[namespace] = _Bucket(burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        if bucket.tokens < count:
            wait = (count - bucket.tokens) / rate
            hint = (
                f"retry in {wait:.2f}s"
                if count <= burst
                else f"submit at most {int(burst)} tasks at once"
            )
            self._refuse(
                NAMESPACE_SUBMITS_PER_SECOND,
                f"namespace {namespace!r} submits more than "
                f"{NAMESPACE_SUBMITS_PER_SECOND}={rate:g} tasks per second; {hint}",
            )
        bucket.tokens -= count

    def _refuse(self, quota: str, message: str) -> None:
        self._metrics.count_refused(quota, "")
        raise ResourceExhausted(message, quota)
