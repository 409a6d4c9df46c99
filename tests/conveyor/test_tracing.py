"""The server tracing interceptor on its own: one SERVER span per call of a Conveyor
service, continuing the caller's trace, with the status code; other services untraced;
handlers wrapped once per method. The whole trace across services is checked in
tests/integration/test_tracing.py."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

from conveyor import tracing
from conveyor.errors import InvalidArgument
from conveyor.metrics import ServiceMetrics
from conveyor.server import ErrorInterceptor, Server

SERVICE = "conveyor.test.v1.Probe"


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """Spans of the tracing module's tracer (the global provider is left alone)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "tracer", provider.get_tracer("test"))
    return exporter


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    server = Server("127.0.0.1:0", [SERVICE], 4 * 1024 * 1024, ServiceMetrics("test"))

    async def fine(request: bytes, context: Any) -> bytes:
        return tracing.current_trace_id().encode()

    async def invalid(request: bytes, context: Any) -> bytes:
        raise InvalidArgument("no good")

    async def many(request: bytes, context: Any) -> AsyncIterator[bytes]:
        for _ in range(3):
            yield tracing.current_trace_id().encode()

    async def endless(request: bytes, context: Any) -> AsyncIterator[bytes]:
        while True:  # suspended at its yield, as a relay writing a watch stream is
            yield tracing.current_trace_id().encode()

    handlers = {
        "Endless": grpc.unary_stream_rpc_method_handler(endless),
        "Fine": grpc.unary_unary_rpc_method_handler(fine),
        "Invalid": grpc.unary_unary_rpc_method_handler(invalid),
        "Many": grpc.unary_stream_rpc_method_handler(many),
    }
    server.grpc.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    await server.start()
    yield server
    await server.stop(0.1)


async def test_a_call_gets_a_server_span_in_the_callers_trace(
    server: Server, spans: InMemorySpanExporter
) -> None:
    caller = TracerProvider().get_tracer("caller")
    with caller.start_as_current_span("client") as root:
        metadata = tuple(tracing.inject().items())
    trace_id = root.get_span_context().trace_id
    async with grpc.aio.insecure_channel(server.address) as channel:
        seen = await channel.unary_unary(f"/{SERVICE}/Fine")(b"", metadata=metadata, timeout=5)
        streamed = [
            item
            async for item in channel.unary_stream(f"/{SERVICE}/Many")(
                b"", metadata=metadata, timeout=5
            )
        ]
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await channel.unary_unary(f"/{SERVICE}/Invalid")(b"", metadata=metadata, timeout=5)
        assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    # The handler ran inside the span, in the caller's trace.
    assert seen == format(trace_id, "032x").encode()
    assert streamed == [seen] * 3
    by_name = {s.name: s for s in spans.get_finished_spans()}
    assert set(by_name) == {f"/{SERVICE}/Fine", f"/{SERVICE}/Many", f"/{SERVICE}/Invalid"}
    for span in by_name.values():
        assert span.context.trace_id == trace_id
        assert span.parent is not None and span.parent.span_id == root.get_span_context().span_id
        assert span.kind == trace.SpanKind.SERVER
        assert span.attributes is not None
        assert span.attributes["rpc.service"] == SERVICE
    fine = by_name[f"/{SERVICE}/Fine"]
    assert fine.attributes is not None and fine.attributes["rpc.method"] == "Fine"
    assert fine.attributes["rpc.grpc.status_code"] == 0
    assert fine.status.status_code != trace.StatusCode.ERROR
    bad = by_name[f"/{SERVICE}/Invalid"]
    assert bad.attributes is not None
    assert bad.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert bad.status.status_code == trace.StatusCode.ERROR


async def test_a_call_without_a_trace_starts_one(
    server: Server, spans: InMemorySpanExporter
) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        seen = await channel.unary_unary(f"/{SERVICE}/Fine")(b"", timeout=5)
    [span] = spans.get_finished_spans()
    assert span.parent is None
    assert seen == format(span.context.trace_id, "032x").encode()


@pytest.fixture
def unexported(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """The tracer of a service that exports nothing (its sampler), with a processor added
    here only to see which spans it records."""
    sampler = tracing.sampler_for({}, exporting=False)
    assert sampler is not None
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "tracer", provider.get_tracer("test"))
    return exporter


async def test_a_service_that_exports_nothing_starts_traces_unsampled(
    server: Server, unexported: InMemorySpanExporter
) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        first = await channel.unary_unary(f"/{SERVICE}/Fine")(b"", timeout=5)
        second = await channel.unary_unary(f"/{SERVICE}/Fine")(b"", timeout=5)
    # Each call still has a trace id of its own (for its logs and messages)...
    assert len(first) == 32 and int(first, 16) != 0
    assert first != second
    # ...and records nothing.
    assert unexported.get_finished_spans() == ()


def test_an_unsampled_trace_is_passed_on_unsampled() -> None:
    sampler = tracing.sampler_for({}, exporting=False)
    tracer = TracerProvider(sampler=sampler).get_tracer("test")
    with tracer.start_as_current_span("gateway call") as span:
        headers = tracing.inject({})
        assert not span.is_recording()
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert headers["traceparent"].split("-")[1] == trace_id
    flags = int(headers["traceparent"].split("-")[3], 16)
    assert flags & 0x01 == 0  # not sampled: a worker that exports records none of it


async def test_a_service_that_exports_nothing_records_a_sampled_callers_trace(
    server: Server, unexported: InMemorySpanExporter
) -> None:
    caller = TracerProvider().get_tracer("caller")  # samples everything
    with caller.start_as_current_span("client") as root:
        metadata = tuple(tracing.inject().items())
    async with grpc.aio.insecure_channel(server.address) as channel:
        await channel.unary_unary(f"/{SERVICE}/Fine")(b"", metadata=metadata, timeout=5)
    [span] = unexported.get_finished_spans()
    assert span.context.trace_id == root.get_span_context().trace_id
    assert span.context.trace_flags.sampled  # what it passes on: sampled


def test_the_sdk_chooses_the_sampler_when_exporting_or_told() -> None:
    assert tracing.sampler_for({}, exporting=True) is None
    assert tracing.sampler_for({"OTEL_TRACES_SAMPLER": "always_on"}, exporting=False) is None


async def test_interceptors_wrap_each_method_once() -> None:
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    other = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    details = SimpleNamespace(method=f"/{SERVICE}/Fine", invocation_metadata=())
    interceptors: list[Any] = [tracing.ServerTracingInterceptor(), ErrorInterceptor()]
    for interceptor in interceptors:
        found: list[Any] = [handler]

        async def lookup(_: Any, found: list[Any] = found) -> Any:
            return found[0]

        first = await interceptor.intercept_service(lookup, details)
        assert first is not handler
        assert await interceptor.intercept_service(lookup, details) is first
        found[0] = other  # a handler replaced: wrapped anew
        assert await interceptor.intercept_service(lookup, details) is not first
        found[0] = None  # an unknown method
        assert await interceptor.intercept_service(lookup, details) is None


async def test_a_stream_the_caller_cancels_ends_its_span_cleanly(
    server: Server, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    async with grpc.aio.insecure_channel(server.address) as channel:
        call = channel.unary_stream(f"/{SERVICE}/Endless")(b"", timeout=5)
        received = [await call.read() for _ in range(3)]
        call.cancel()  # a watcher going away mid-stream
        async with asyncio.timeout(5):
            while not spans.get_finished_spans():
                await asyncio.sleep(0.01)
    [span] = spans.get_finished_spans()
    # Every item was made inside the call's span, and leaving it logged nothing.
    assert received == [format(span.context.trace_id, "032x").encode()] * 3
    assert [r.getMessage() for r in caplog.records] == []


async def test_client_call_makes_a_client_span_the_servers_span_continues(
    server: Server, spans: InMemorySpanExporter
) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        with tracing.client_call(f"/{SERVICE}/Fine") as metadata:
            seen = await channel.unary_unary(f"/{SERVICE}/Fine")(b"", metadata=metadata, timeout=5)
        with (
            pytest.raises(grpc.aio.AioRpcError),
            tracing.client_call(f"/{SERVICE}/Invalid") as metadata,
        ):
            await channel.unary_unary(f"/{SERVICE}/Invalid")(b"", metadata=metadata, timeout=5)
        with tracing.client_call(f"/{SERVICE}/Endless") as metadata:
            call = channel.unary_stream(f"/{SERVICE}/Endless")(b"", metadata=metadata, timeout=5)
            await call.read()
            call.cancel()  # a watch the caller stops: no error
    finished = spans.get_finished_spans()
    clients = {s.name: s for s in finished if s.kind == trace.SpanKind.CLIENT}
    servers = {s.name: s for s in finished if s.kind == trace.SpanKind.SERVER}
    assert set(clients) == {f"/{SERVICE}/Fine", f"/{SERVICE}/Invalid", f"/{SERVICE}/Endless"}
    fine = clients[f"/{SERVICE}/Fine"]
    # The server's span is the client span's child, and the handler ran in that trace.
    parent = servers[f"/{SERVICE}/Fine"].parent
    assert parent is not None and parent.span_id == fine.context.span_id
    assert seen == format(fine.context.trace_id, "032x").encode()
    assert fine.attributes is not None
    assert (fine.attributes["rpc.service"], fine.attributes["rpc.method"]) == (SERVICE, "Fine")
    assert fine.attributes["rpc.grpc.status_code"] == 0
    assert fine.status.status_code != trace.StatusCode.ERROR
    bad = clients[f"/{SERVICE}/Invalid"]
    assert bad.attributes is not None
    assert bad.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert bad.status.status_code == trace.StatusCode.ERROR
    assert bad.status.description == "INVALID_ARGUMENT: no good"
    assert clients[f"/{SERVICE}/Endless"].status.status_code != trace.StatusCode.ERROR


async def test_client_call_is_not_made_current() -> None:
    provider = TracerProvider()
    outer_span = provider.get_tracer("caller").start_as_current_span("outer")
    with outer_span as outer, tracing.client_call(f"/{SERVICE}/Fine"):
        # A stream's generator suspended inside the block may be closed from any
        # context: nothing was attached that would have to be detached there.
        assert trace.get_current_span() is outer


def _provider_of(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> TracerProvider:
    """The tracer provider setup_tracing installs for ``env`` (the global one left alone)."""
    installed: list[TracerProvider] = []
    monkeypatch.setattr(tracing, "_configured", False)
    monkeypatch.setattr(trace, "set_tracer_provider", installed.append)
    # Every variable setup_tracing may set is recorded by monkeypatch (which records
    # nothing when deleting an absent one) and removed, so the test's end restores the
    # environment as it was, without what setup_tracing put there.
    for name in {*env, *(n for n in os.environ if n.startswith("OTEL_"))}:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    tracing.setup_tracing("test", env)
    [provider] = installed
    return provider


def test_a_service_without_an_exporter_starts_traces_unsampled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sampler = _provider_of({}, monkeypatch).sampler
    assert "ParentBased" in sampler.get_description()
    assert "AlwaysOffSampler" in sampler.get_description()


def test_the_sampler_variable_counts_from_the_env_file_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The merged settings (a .env file's values among them) reach the SDK, which reads
    # only the process environment.
    sampler = _provider_of({"OTEL_TRACES_SAMPLER": "always_on"}, monkeypatch).sampler
    assert sampler.get_description() == "AlwaysOnSampler"


TRACE_ID, PARENT_ID = 0xABC, 0xDEF


def _consumer_spans(
    monkeypatch: pytest.MonkeyPatch, provider: TracerProvider, headers: dict[str, str]
) -> tuple[trace.Span, trace.Span]:
    """The span ``consumer_span`` makes under ``provider``, and the one the SDK makes."""
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    monkeypatch.setattr(tracing, "tracer", provider.get_tracer("test"))
    made = tracing.consumer_span("run t", headers, {"conveyor.task_id": "t1"})
    sdk = provider.get_tracer("sdk").start_span("run t", context=tracing.extract(headers))
    return made, sdk


@pytest.mark.parametrize("flags", ["01", "00"])
def test_a_consumer_span_without_an_exporter_is_the_one_the_sdk_would_make(
    monkeypatch: pytest.MonkeyPatch, flags: str
) -> None:
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))  # no exporter: no processor
    headers = {
        "Nats-Msg-Id": "t1:run:0",
        "traceparent": f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-{flags}",
    }
    made, sdk = _consumer_spans(monkeypatch, provider, headers)
    context, expected = made.get_span_context(), sdk.get_span_context()
    assert context.trace_id == expected.trace_id == TRACE_ID
    assert context.trace_flags == expected.trace_flags  # sampled as its parent
    assert context.is_valid and context.span_id != PARENT_ID
    assert not made.is_recording()  # the SDK records a sampled one, for nobody


def test_a_consumer_span_is_recorded_when_spans_go_somewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    headers = {"traceparent": f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01"}
    made, _ = _consumer_spans(monkeypatch, provider, headers)
    assert made.is_recording()
    made.end()
    [span] = exporter.get_finished_spans()
    assert span.parent is not None and span.parent.span_id == PARENT_ID


def test_a_consumer_span_with_a_trace_state_goes_through_the_sdk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    headers = {
        "traceparent": f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01",
        "tracestate": "vendor=value",
    }
    made, _ = _consumer_spans(monkeypatch, provider, headers)
    assert made.get_span_context().trace_state.get("vendor") == "value"
