"""Applying the EVENTS stream to the database, in order, a batch per transaction."""

from __future__ import annotations

import asyncio
import logging

from google.protobuf.message import DecodeError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from conveyor import subjects
from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from store.repository import TaskRepository
from store.watch import WatchHub

log = logging.getLogger(__name__)

FETCH_WAIT = 1.0


def consumer_config(ack_wait: float = 30.0) -> ConsumerConfig:
    """The store's durable consumer: every event, in order, acked cumulatively."""
    return ConsumerConfig(
        durable_name=subjects.STORE_CONSUMER,
        description="The Conveyor store applying task events",
        filter_subject=f"{subjects.EVENTS_PREFIX}.>",
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.ALL,
        ack_wait=ack_wait,
        max_deliver=-1,
        max_ack_pending=50_000,
        max_waiting=16,
    )


class EventApplier:
    """Fetches events in batches and applies each batch in one transaction.

    The applied sequence is written in the same transaction as the state, and events at or
    below it are skipped, so a batch redelivered after a crash changes nothing.
    """

    def __init__(
        self, js: JetStreamContext, repository: TaskRepository, hub: WatchHub, batch_size: int
    ) -> None:
        self._js = js
        self._repository = repository
        self._hub = hub
        self._batch_size = batch_size
        self.healthy = True

    async def start(self) -> None:
        await self._js.add_consumer(subjects.STREAM_EVENTS, consumer_config())
        self._sub = await self._js.pull_subscribe_bind(
            subjects.STORE_CONSUMER, subjects.STREAM_EVENTS
        )
        self._hub.applied_sequence = await self._repository.applied_sequence()

    async def run(self) -> None:
        """Applies events until cancelled."""
        backoff = 0.1
        while True:
            try:
                messages = await self._sub.fetch(self._batch_size, timeout=FETCH_WAIT)
            except TimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("fetching events failed: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            if not messages:
                continue
            batch: list[tuple[int, events_pb2.TaskEvent]] = []
            for msg in messages:
                sequence = msg.metadata.sequence.stream
                try:
                    batch.append((sequence, events_pb2.TaskEvent.FromString(msg.data)))
                except DecodeError:
                    log.error("skipping malformed event at sequence %d", sequence)
            last_sequence = messages[-1].metadata.sequence.stream
            changes = await self._apply_until_done(batch)
            await messages[-1].ack()  # AckPolicy.ALL: acknowledges the whole batch
            await self._hub.publish(changes, last_sequence)

    async def _apply_until_done(
        self, batch: list[tuple[int, events_pb2.TaskEvent]]
    ) -> list[tasks_pb2.Task]:
        delay = 0.2
        while True:
            try:
                changes = await self._repository.apply(batch)
                self.healthy = True
                return changes
            except asyncio.CancelledError:
                raise
            except Exception:
                # The database is away or failing: keep the batch and try again, in order.
                self.healthy = False
                log.exception("applying %d events failed; retrying in %.1fs", len(batch), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def catch_up(self, timeout: float) -> bool:
        """Waits until every event published so far is applied (read your writes)."""
        try:
            info = await self._js.stream_info(subjects.STREAM_EVENTS)
        except Exception as exc:
            log.warning("stream info failed: %s", exc)
            return False
        return await self._hub.wait_applied(info.state.last_seq, timeout)
