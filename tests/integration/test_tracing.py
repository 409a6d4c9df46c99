"""One trace shows a task's whole life: client, gateway, worker and store."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from conveyor.client import AsyncClient, Client
from tests.conftest import System

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
