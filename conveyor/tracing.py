"""OpenTelemetry tracing: one trace per task, from the client through the gateway, the
NATS messages, the worker and the store.

Context travels as W3C ``traceparent`` headers: in gRPC metadata (``client_call`` in the
SDK, the grpc instrumentation's client interceptors on the scheduler's channel,
``ServerTracingInterceptor`` on servers), and in the headers of every JetStream message
Conveyor publishes. Spans are always created, so logs carry trace ids; they are exported
only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is
set.

Sampling is decided where a trace starts, as OpenTelemetry's parent-based samplers do. A
service that exports samples the traces it starts (unless ``OTEL_TRACES_SAMPLER`` says
otherwise); one that does not export starts its traces unsampled: their spans are
non-recording (ids only, for logs and propagation), far cheaper than a recorded span. A
caller's sampled trace is recorded and passed on as sampled either way, so a service
further along that exports still records its part.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import random
import re
from collections.abc import Iterator, Mapping
from typing import Any

import grpc
from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler

from conveyor.interceptors import CachingInterceptor

_configured = False

tracer = trace.get_tracer("conveyor")


def setup_tracing(service: str, env: Mapping[str, str]) -> None:
    """Installs the tracer provider of a service process (once)."""
    global _configured
    if _configured:
        return
    _configured = True
    # The SDK reads its own variables (endpoint, headers, sampler) from the process
    # environment: the .env file's are put there, as the environment wins over it.
    for name, value in env.items():
        if name.startswith("OTEL_"):
            os.environ.setdefault(name, value)
    exporting = bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"conveyor-{service}"}),
        sampler=sampler_for(env, exporting),
    )
    if exporting:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def sampler_for(env: Mapping[str, str], exporting: bool) -> Sampler | None:
    """The sampler of a service's tracer provider. None leaves it to the SDK (the
    ``OTEL_TRACES_SAMPLER`` variable, else parent-based always-on): for a service that
    exports, or when the variable is set. A service that exports nothing records only
    the traces its callers sampled, and starts its own unsampled."""
    if exporting or env.get("OTEL_TRACES_SAMPLER"):
        return None
    return ParentBased(root=ALWAYS_OFF)


def spans_recorded() -> bool:
    """Whether a span made now goes anywhere: False only for the SDK's tracer provider
    with no span processor at all (no exporter configured), so callers can skip spans
    that would only cost time. Reads SDK internals; when they are missing, True."""
    provider = trace.get_tracer_provider()
    active = getattr(provider, "_active_span_processor", None)
    processors = getattr(active, "_span_processors", None)
    return processors is None or len(processors) > 0


def _follows_parent_unrecorded() -> bool:
    """Whether spans made now follow their parent's sampling and go nowhere."""
    sampler = getattr(trace.get_tracer_provider(), "sampler", None)
    return isinstance(sampler, ParentBased) and not spans_recorded()


def consumer_span(
    name: str, headers: Mapping[str, str] | None, attributes: Mapping[str, Any]
) -> trace.Span:
    """The CONSUMER span of a message's handling, in the trace its headers carry.

    When no span would be recorded (no exporter) and sampling follows the parent, this is
    the span the SDK would make, built directly: the parent's trace and sampled flag, a
    new span id, nothing recorded. Only a plain ``traceparent`` takes that way (one with
    ``tracestate`` or baggage goes through the SDK); it is most of what a worker spends on
    tracing per task."""
    carrier = headers or {}
    parent = carrier.get("traceparent")
    if (
        parent is not None
        and "tracestate" not in carrier
        and "baggage" not in carrier
        and _follows_parent_unrecorded()
        and (match := _TRACEPARENT.fullmatch(parent)) is not None
    ):
        trace_id, span_id, flags = (int(group, 16) for group in match.groups())
        if trace_id and span_id:
            sampled = trace.TraceFlags(flags & trace.TraceFlags.SAMPLED)
            span_context = trace.SpanContext(
                trace_id, _new_span_id(), is_remote=False, trace_flags=sampled
            )
            return trace.NonRecordingSpan(span_context)
    return tracer.start_span(
        name, context=extract(headers), kind=trace.SpanKind.CONSUMER, attributes=attributes
    )


_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def _new_span_id() -> int:
    """A random non-zero span id, as the SDK's id generator makes them."""
    while not (span_id := random.getrandbits(64)):
        pass
    return span_id


def inject(headers: dict[str, str] | None = None) -> dict[str, str]:
    """The headers with the current trace context added (``traceparent``)."""
    carrier = headers if headers is not None else {}
    propagate.inject(carrier)
    return carrier


def sampled_traceparent() -> str:
    """The current span's W3C ``traceparent`` when its trace is sampled, else "": what an
    event inside a batch carries instead of its own message header."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid or not span_context.trace_flags.sampled:
        return ""
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-01"


def extract(headers: Mapping[str, str] | None) -> context.Context:
    """The trace context carried by message headers (empty when there is none)."""
    return propagate.extract(dict(headers or {}))


def current_trace_id() -> str:
    """The current trace id in hex, or "" outside any trace."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else ""


_PROPAGATED = frozenset({"traceparent", "tracestate", "baggage"})


def _caller_context(servicer_context: Any) -> context.Context | None:
    """The trace context the caller sent in the call's metadata, or None (a new trace)."""
    carrier = {
        key: value
        for key, value in servicer_context.invocation_metadata() or ()
        if key in _PROPAGATED
    }
    return propagate.extract(carrier) if carrier else None


def _finish(span: trace.Span, servicer_context: Any, failed: bool) -> None:
    """Records the call's status code on its span; any code but OK is an error."""
    code = servicer_context.code()
    number = code.value[0] if isinstance(code, grpc.StatusCode) else code
    if number is None:
        number = grpc.StatusCode.UNKNOWN.value[0] if failed else 0
    span.set_attribute("rpc.grpc.status_code", int(number))
    if number != 0:
        span.set_status(trace.StatusCode.ERROR)


class ServerTracingInterceptor(CachingInterceptor):
    """One SERVER span per call of a Conveyor service, continuing the caller's trace.

    What the OpenTelemetry grpc instrumentation's server interceptor records (name = full
    method, rpc.system/service/method, rpc.grpc.status_code, error status), at a fraction
    of its cost per call: handlers are wrapped once per method rather than on every call,
    and the servicer context is not wrapped. Only Conveyor's own services are traced:
    handlers that stream with context.write (health Watch) cannot be wrapped, and probes
    would only add noise.
    """

    def wrap(self, handler: Any, full_method: str) -> Any:
        service, _, method = full_method.lstrip("/").partition("/")
        if not service.startswith("conveyor."):
            return handler
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}

        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request: Any, servicer_context: Any) -> Any:
                # The span made current by hand: start_as_current_span nests three
                # generator context managers, a visible share of a submit's CPU. An
                # unsampled span records nothing, so it gets no status.
                span = tracer.start_span(
                    full_method,
                    context=_caller_context(servicer_context),
                    kind=trace.SpanKind.SERVER,
                    attributes=attributes,
                    record_exception=False,
                    set_status_on_exception=False,
                )
                token = context.attach(trace.set_span_in_context(span))
                failed = True
                try:
                    response = await inner(request, servicer_context)
                    failed = False
                    return response
                finally:
                    context.detach(token)
                    if span.is_recording():
                        _finish(span, servicer_context, failed)
                        span.end()

            return handler._replace(unary_unary=unary)
        if handler.unary_stream is not None and inspect.isasyncgenfunction(handler.unary_stream):
            stream = handler.unary_stream

            async def streaming(request: Any, servicer_context: Any) -> Any:
                # The span is current only while the handler makes each item, never
                # across a yield: a stream the caller cancels is closed by the loop's
                # generator finalizer, in another context, where leaving a span made
                # current here fails ("Failed to detach context").
                span = tracer.start_span(
                    full_method,
                    context=_caller_context(servicer_context),
                    kind=trace.SpanKind.SERVER,
                    attributes=attributes,
                )
                items = stream(request, servicer_context)
                failed = True
                try:
                    while True:
                        with trace.use_span(
                            span, record_exception=False, set_status_on_exception=False
                        ):
                            try:
                                item = await anext(items)
                            except StopAsyncIteration:
                                break
                        yield item
                    failed = False
                finally:
                    await items.aclose()
                    _finish(span, servicer_context, failed)
                    span.end()

            return handler._replace(unary_stream=streaming)
        return handler


@contextlib.contextmanager
def http_server_call(full_method: str, headers: Mapping[str, str]) -> Iterator[trace.Span]:
    """A SERVER span around one call of the HTTP door, current while it is answered (so
    relayed calls and published messages carry it on), continuing the trace of the
    request's ``traceparent`` header, or starting one."""
    service, _, method = full_method.lstrip("/").partition("/")
    carrier = {key: headers[key] for key in _PROPAGATED if key in headers}
    with tracer.start_as_current_span(
        full_method,
        context=propagate.extract(carrier) if carrier else None,
        kind=trace.SpanKind.SERVER,
        attributes={"rpc.system": "http", "rpc.service": service, "rpc.method": method},
    ) as span:
        yield span


def server_interceptors() -> list[Any]:
    """gRPC server interceptors that continue the caller's trace."""
    return [ServerTracingInterceptor()]


Metadata = tuple[tuple[str, str], ...]


@contextlib.contextmanager
def client_call(full_method: str) -> Iterator[Metadata]:
    """A CLIENT span around one gRPC call, and the call metadata that carries it to the
    server: pass the metadata to the call made inside the ``with``, and let its
    ``grpc.aio.AioRpcError`` (if any) leave the block, so the span records the status.

    What the OpenTelemetry grpc instrumentation's client interceptors record (name = full
    method, rpc.system/service/method, rpc.grpc.status_code, error status), without
    intercepting the channel, which would add CPU to every call (measured in
    docs/performance.md). The span is not made current, so a
    stream's generator may be closed in any context."""
    service, _, method = full_method.lstrip("/").partition("/")
    span = tracer.start_span(
        full_method,
        kind=trace.SpanKind.CLIENT,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
    )
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    try:
        yield tuple(carrier.items())
        span.set_attribute("rpc.grpc.status_code", grpc.StatusCode.OK.value[0])
    except grpc.aio.AioRpcError as exc:
        span.set_attribute("rpc.grpc.status_code", exc.code().value[0])
        span.set_status(trace.StatusCode.ERROR, f"{exc.code().name}: {exc.details()}")
        raise
    except Exception as exc:  # not a cancel or a closed stream: those are no errors
        span.set_status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        span.end()


def client_interceptors() -> list[Any]:
    """gRPC client interceptors that send the current trace to the server (for channels
    whose calls are too many to wrap one by one in :func:`client_call`)."""
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors())
