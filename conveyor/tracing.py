"""OpenTelemetry tracing: one trace per task, from the client through the gateway, the
NATS messages, the worker and the store.

Context travels as W3C ``traceparent`` headers: in gRPC metadata (the grpc
instrumentation's interceptors), and in the headers of every JetStream message Conveyor
publishes. Spans are always created, so logs carry trace ids; they are exported only
when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_configured = False

tracer = trace.get_tracer("conveyor")


def setup_tracing(service: str, env: Mapping[str, str]) -> None:
    """Installs the tracer provider of a service process (once)."""
    global _configured
    if _configured:
        return
    _configured = True
    provider = TracerProvider(resource=Resource.create({"service.name": f"conveyor-{service}"}))
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def inject(headers: dict[str, str] | None = None) -> dict[str, str]:
    """The headers with the current trace context added (``traceparent``)."""
    carrier = headers if headers is not None else {}
    propagate.inject(carrier)
    return carrier


def extract(headers: Mapping[str, str] | None) -> context.Context:
    """The trace context carried by message headers (empty when there is none)."""
    return propagate.extract(dict(headers or {}))


def current_trace_id() -> str:
    """The current trace id in hex, or "" outside any trace."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else ""


def server_interceptors() -> list[Any]:
    """gRPC server interceptors that continue the caller's trace."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

    # Only Conveyor's own services: the instrumentation cannot wrap handlers that stream
    # with context.write (health Watch), and probes would only add noise.
    return [aio_server_interceptor(filter_=filters.service_prefix("conveyor."))]


def client_interceptors() -> list[Any]:
    """gRPC client interceptors that send the current trace to the server."""
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors())
