"""One trace shows a task's whole life: client, gateway, worker and store."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from conveyor import messages, subjects, tracing
from conveyor.api.events.v1 import events_pb2
from conveyor.client import AsyncClient, Client
from conveyor.ids import new_task_id
from tests.conftest import System
from tests.support.factories import at, submitted, worker_event

pytestmark = pytest.mark.integration

_exporter = InMemorySpanExporter()


@pytest.fixture(scope="session")
def spans() -> InMemorySpanExporter:
    """Spans of every service in this process (the provider can be set only once)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_exporter))
    trace.set_tracer_provider(provider)
    return _exporter


async def test_a_task_has_one_trace_from_submit_to_store(
    system: System, spans: InMemorySpanExporter
) -> None:
    await system.start()
    assert system.gateway is not None
    tracer = trace.get_tracer("test")
    async with AsyncClient(system.gateway.address) as client:
        with tracer.start_as_current_span("client request") as root:
            task = await client.submit_text("Trace me. Twice!", transforms=["upper"])
        trace_id = root.get_span_context().trace_id
        done = await client.wait(task.id, timeout=30)
    assert done.result.text_processing.sentences == 2
    # The task names its trace, so a reader can go from the task to these spans.
    assert done.trace_id == format(trace_id, "032x")
    async with asyncio.timeout(10):
        while True:
            names = {s.name for s in spans.get_finished_spans() if s.context.trace_id == trace_id}
            if {"run text_processing", "store apply completed"} <= names:
                break
            await asyncio.sleep(0.1)
    assert "/conveyor.api.tasks.v1.TaskService/SubmitTask" in names  # gateway server span
    # Each event the store applied joined the trace (a short attempt's start travels with
    # its completion, so there may be no separate `started` event).
    assert "store apply submitted" in names
    # The SDK's own CLIENT span sits between the caller's span and the gateway's.
    submit = "/conveyor.api.tasks.v1.TaskService/SubmitTask"
    in_trace = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
    [client_span] = [s for s in in_trace if s.name == submit and s.kind == trace.SpanKind.CLIENT]
    [gateway_span] = [s for s in in_trace if s.name == submit and s.kind == trace.SpanKind.SERVER]
    assert client_span.parent is not None
    assert client_span.parent.span_id == root.get_span_context().span_id
    assert gateway_span.parent is not None
    assert gateway_span.parent.span_id == client_span.context.span_id


async def test_the_blocking_client_calls_in_the_callers_trace(
    system: System, spans: InMemorySpanExporter
) -> None:
    await system.start()
    assert system.gateway is not None
    address = system.gateway.address

    def script() -> tuple[int, int]:
        # A plain script's thread: the call runs on the client's own loop thread, in the
        # context of this one (run_coroutine_threadsafe copies it), so in this trace.
        tracer = trace.get_tracer("test")
        with Client(address) as client, tracer.start_as_current_span("script") as root:
            client.submit_text("Traced from a script.")
        return root.get_span_context().trace_id, root.get_span_context().span_id

    trace_id, root_span_id = await asyncio.to_thread(script)
    [client_span] = [
        s
        for s in spans.get_finished_spans()
        if s.context.trace_id == trace_id and s.kind == trace.SpanKind.CLIENT
    ]
    assert client_span.name == "/conveyor.api.tasks.v1.TaskService/SubmitTask"
    assert client_span.parent is not None and client_span.parent.span_id == root_span_id


async def test_each_event_of_a_batch_joins_its_own_tasks_trace(
    system: System,
    spans: InMemorySpanExporter,
    nats_connection: tuple[NATS, JetStreamContext],
) -> None:
    """A batch message holds events of many tasks, each traced (or not) on its own: the
    store's span of an event is in the trace its ``traceparent`` names."""
    await system.start_store(retention_seconds=1e10)  # the factories' events are old
    assert system.store is not None and system.store.applier is not None
    _, js = nats_connection
    spans.clear()  # those of earlier tests in this session
    traced, untraced = new_task_id(), new_task_id()
    with trace.get_tracer("test").start_as_current_span("task's trace") as root:
        traceparent = tracing.inject({})["traceparent"]
    events = [
        worker_event(traced, at(1), 1, started=events_pb2.Started(), traceparent=traceparent),
        worker_event(untraced, at(1), 1, started=events_pb2.Started()),
        worker_event(traced, at(2), 1, completed=events_pb2.Completed(), traceparent=traceparent),
    ]
    for msg_id, publisher, batch in (
        ("g", subjects.GATEWAY, [submitted(traced), submitted(untraced)]),
        ("w", subjects.WORKER, events),
    ):
        subject, data, headers = messages.event_batch(publisher, "text_processing", msg_id, batch)
        sequence = (await js.publish(subject, data, headers=headers, timeout=5)).seq
    assert await system.store.applier.catch_up(30)
    applied = [
        s for s in spans.get_finished_spans()
        if (s.attributes or {}).get("conveyor.events_sequence") == sequence
    ]  # fmt: skip
    assert sorted(s.name for s in applied) == ["store apply completed", "store apply started"]
    assert {s.context.trace_id for s in applied} == {root.get_span_context().trace_id}
