"""EventApplier's gap check: trusted when the batch follows what it committed, re-read
from the database otherwise."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from unittest.mock import patch

from nats.aio.msg import Msg
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from conveyor.api.events.v1 import events_pb2
from conveyor.pull import stream_sequence
from conveyor.tracing import spans_recorded
from store.consumer import EventApplier
from store.watch import WatchHub
from tests.support.factories import submitted


class FakeRepository:
    def __init__(self, applied: int) -> None:
        self.applied = applied
        self.reads = 0
        self.batches: list[list[int]] = []

    async def applied_sequence(self) -> int:
        self.reads += 1
        return self.applied

    async def cursor(self) -> tuple[int, int | None]:
        return self.applied, None

    async def apply(
        self, events: list[tuple[int, events_pb2.TaskEvent]], last_time_us: int | None = None
    ) -> list[Any]:
        fresh = sorted(s for s, _ in events if s > self.applied)
        self.batches.append(fresh)
        self.applied = max([self.applied, *fresh])
        return []


class FakeNats:
    def new_inbox(self) -> str:
        return "_INBOX.test"

    async def subscribe(self, *args: Any, **kwargs: Any) -> None:
        return None


class FakeStream:
    def __init__(self) -> None:
        self.reads: list[int] = []

    async def add_consumer(self, *args: Any) -> None:
        pass

    async def stream_info(self, name: str) -> Any:
        return SimpleNamespace(state=SimpleNamespace(first_seq=1, last_seq=1000))

    async def get_msg(self, name: str, sequence: int) -> Any:
        self.reads.append(sequence)
        return SimpleNamespace(
            data=submitted(f"01jn0000000000000000000{sequence:03d}").SerializeToString(),
            subject="conveyor.events.gateway.text_processing",
            headers=None,
            time=None,
        )


def message(sequence: int) -> Any:
    async def ack() -> None:
        pass

    data = submitted(f"01jn0000000000000000000{sequence:03d}").SerializeToString()
    return SimpleNamespace(
        data=data,
        subject="conveyor.events.gateway.text_processing",
        reply=f"$JS.ACK.EVENTS.store.1.{sequence}.{sequence}.1764300000000000000.0",
        headers=None,
        ack=ack,
        metadata=SimpleNamespace(sequence=SimpleNamespace(stream=sequence)),
    )


async def test_the_stored_sequence_is_read_only_when_a_batch_does_not_follow() -> None:
    repository, stream = FakeRepository(applied=2), FakeStream()
    applier = EventApplier(FakeNats(), stream, repository, WatchHub(), 100)  # type: ignore[arg-type]
    await applier.start()
    assert repository.reads == 1

    await applier._apply_messages([message(3), message(4)])
    await applier._apply_messages([message(5)])
    assert repository.reads == 1  # contiguous after what it committed: no read
    assert stream.reads == []

    # 6 and 7 were left pending by a store that died: the gap is read from the stream.
    await applier._apply_messages([message(8), message(9)])
    assert repository.reads == 2
    assert stream.reads == [6, 7]
    assert repository.batches[-1] == [6, 7, 8, 9]

    # Another replica applied up to 12: the batch does not follow, the stored value is
    # read, and nothing below it is read from the stream or applied again.
    repository.applied = 12
    await applier._apply_messages([message(11), message(12), message(13)])
    assert repository.reads == 3
    assert stream.reads == [6, 7]
    assert repository.batches[-1] == [13]
    await applier._apply_messages([message(14)])
    assert repository.reads == 3


async def test_a_long_gap_is_applied_a_batch_size_at_a_time_in_order() -> None:
    repository, stream, hub = FakeRepository(applied=0), FakeStream(), WatchHub()
    applier = EventApplier(FakeNats(), stream, repository, hub, 4)  # type: ignore[arg-type]
    await applier.start()
    # A new database: the consumer delivers 3 again (left pending) and then 10 and 11.
    await applier._apply_messages([message(3), message(10), message(11)])
    assert stream.reads == [1, 2, 4, 5, 6, 7, 8, 9]
    assert repository.batches == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11]]
    assert hub.applied_sequence == 11


async def test_a_redelivered_batch_is_checked_against_the_stored_sequence() -> None:
    repository, stream = FakeRepository(applied=5), FakeStream()
    applier = EventApplier(FakeNats(), stream, repository, WatchHub(), 100)  # type: ignore[arg-type]
    await applier.start()
    await applier._apply_messages([message(4), message(5)])
    assert repository.reads == 2
    assert stream.reads == []
    assert repository.batches == [[]]


def test_the_stream_sequence_is_read_from_the_reply_subject() -> None:
    reply = "$JS.ACK.EVENTS.conveyor-store.1.4242.17.1764300000000000000.3"
    assert stream_sequence(SimpleNamespace(reply=reply)) == 4242  # type: ignore[arg-type]
    # Other forms (JetStream domain and account hash) go through nats-py's parser.
    other = "$JS.ACK.hub.ACCOUNTHASH.EVENTS.conveyor-store.1.4243.18.1764300000000000000.3.x"
    assert stream_sequence(Msg(None, reply=other)) == 4243  # type: ignore[arg-type]


def test_apply_spans_are_made_only_when_a_processor_takes_them() -> None:
    provider = TracerProvider()
    with patch.object(trace, "get_tracer_provider", return_value=provider):
        assert not spans_recorded()
        provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        assert spans_recorded()
