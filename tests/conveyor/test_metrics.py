"""The metrics module on its own: names, the /metrics endpoint, the gRPC interceptor,
settings and ``conveyor dev``'s ports. The services' numbers are checked end to end in
tests/integration/test_metrics.py."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from conveyor.config import (
    ConfigError,
    GatewaySettings,
    SchedulerSettings,
    StoreSettings,
    WorkerSettings,
)
from conveyor.dev import plan
from conveyor.errors import NotFound
from conveyor.metrics import (
    GatewayMetrics,
    SchedulerMetrics,
    ServiceMetrics,
    StoreMetrics,
    WorkerMetrics,
)
from conveyor.server import Server
from tests.support import promtool


class Applied:
    applied_sequence = 41
    watchers = 2


def busy_services() -> list[ServiceMetrics]:
    """Every service's metrics, with a value in each labelled series."""
    gateway = GatewayMetrics()
    gateway.count_submitted([("text_processing", False), ("text_processing", True)])
    worker = WorkerMetrics(8)
    worker.serve_types(["text_processing"])
    for kind in ("started", "completed", "failed", "retrying", "cancelled", "progressed"):
        worker.count_event("text_processing", kind)
    worker.run_duration.labels("text_processing").observe(0.2)
    worker.queue_wait.labels("text_processing").observe(1.5)
    store = StoreMetrics()
    store.track(Applied())
    scheduler = SchedulerMetrics()
    scheduler.queue_depth.labels("text_processing", "normal").set(3)
    services: list[ServiceMetrics] = [gateway, worker, store, scheduler]
    for service in services:
        service.grpc_requests.labels("grpc.health.v1.Health/Check", "OK").inc()
        service.grpc_duration.labels("grpc.health.v1.Health/Check").observe(0.001)
        service.nats_changed(connected=True)
    return services


def samples(service: ServiceMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(service.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.parametrize("service", busy_services(), ids=lambda s: s.service)
def test_exposition_passes_promtool_lint(service: ServiceMetrics) -> None:
    promtool.check_metrics(generate_latest(service.registry))


@pytest.mark.parametrize("service", busy_services(), ids=lambda s: s.service)
def test_names_and_labels_follow_prometheus_conventions(service: ServiceMetrics) -> None:
    for family in service.registry.collect():
        if family.name.startswith(("process_", "python_")):
            continue
        assert family.name.startswith("conveyor_"), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        for sample in family.samples:
            assert not {"id", "task_id", "task", "worker_id"} & set(sample.labels), sample


def test_worker_counts_each_event_kind_by_type() -> None:
    worker = WorkerMetrics(4)
    worker.serve_types(["a", "b"])
    for kind in ("started", "started", "retrying", "completed", "progressed"):
        worker.count_event("a", kind)
    got = samples(worker)
    assert got[("conveyor_tasks_started_total", (("type", "a"),))] == 2
    assert got[("conveyor_tasks_retried_total", (("type", "a"),))] == 1
    assert got[("conveyor_tasks_completed_total", (("type", "a"),))] == 1
    assert got[("conveyor_tasks_failed_total", (("type", "a"),))] == 0
    # Served types are exported at 0 before anything happens.
    assert got[("conveyor_tasks_started_total", (("type", "b"),))] == 0
    assert got[("conveyor_worker_concurrency", ())] == 4


def test_gateway_counts_new_and_deduplicated_submits_apart() -> None:
    gateway = GatewayMetrics()
    gateway.count_submitted([("a", False), ("a", False), ("a", True), ("b", False)])
    got = samples(gateway)
    assert got[("conveyor_tasks_submitted_total", (("type", "a"),))] == 2
    assert got[("conveyor_tasks_submitted_total", (("type", "b"),))] == 1
    assert got[("conveyor_tasks_deduplicated_total", (("type", "a"),))] == 1


def test_store_reads_the_applied_sequence_at_scrape_time() -> None:
    store = StoreMetrics()
    state = Applied()
    store.track(state)
    state.applied_sequence = 99
    got = samples(store)
    assert got[("conveyor_store_applied_sequence", ())] == 99
    assert got[("conveyor_store_watchers", ())] == 2


async def http(address: str, request: bytes) -> tuple[str, dict[str, str], bytes]:
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, body


@pytest.fixture
async def served() -> AsyncIterator[ServiceMetrics]:
    metrics = busy_services()[1]
    await metrics.serve("127.0.0.1:0")
    yield metrics
    await metrics.close()


async def test_endpoint_serves_the_registry_on_metrics(served: ServiceMetrics) -> None:
    assert served.address is not None
    status, headers, body = await http(served.address, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert int(headers["content-length"]) == len(body)
    assert b'conveyor_tasks_started_total{type="text_processing"} 1.0' in body
    promtool.check_metrics(body)


async def test_endpoint_negotiates_openmetrics_and_answers_head(served: ServiceMetrics) -> None:
    assert served.address is not None
    accept = b"Accept: application/openmetrics-text; version=1.0.0\r\n"
    status, headers, body = await http(
        served.address, b"GET /metrics HTTP/1.1\r\n" + accept + b"\r\n"
    )
    assert headers["content-type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    status, headers, body = await http(served.address, b"HEAD /metrics HTTP/1.1\r\n\r\n")
    assert status == "HTTP/1.1 200 OK" and body == b"" and int(headers["content-length"]) > 0


async def test_endpoint_refuses_other_paths_and_methods(served: ServiceMetrics) -> None:
    assert served.address is not None
    status, _, _ = await http(served.address, b"GET /admin HTTP/1.1\r\n\r\n")
    assert status == "HTTP/1.1 404 Not Found"
    status, _, _ = await http(served.address, b"POST /metrics HTTP/1.1\r\n\r\n")
    assert status == "HTTP/1.1 405 Method Not Allowed"


async def test_endpoint_on_a_taken_port_names_the_address(served: ServiceMetrics) -> None:
    assert served.address is not None
    other = GatewayMetrics()
    with pytest.raises(OSError, match=f"cannot serve metrics on {served.address}"):
        await other.serve(served.address)


async def test_empty_listen_serves_nothing() -> None:
    metrics = GatewayMetrics()
    await metrics.serve("")
    assert metrics.address is None
    await metrics.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    metrics = ServiceMetrics("test")
    server = Server("127.0.0.1:0", ["test.Probe"], 4 * 1024 * 1024, metrics)

    async def missing(request: bytes, context: Any) -> bytes:
        raise NotFound("no such thing")

    async def broken(request: bytes, context: Any) -> bytes:
        raise ValueError("a bug")

    async def fine(request: bytes, context: Any) -> bytes:
        return b"ok"

    handlers = {
        name: grpc.unary_unary_rpc_method_handler(handler)
        for name, handler in [("Missing", missing), ("Broken", broken), ("Fine", fine)]
    }
    server.grpc.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("test.Probe", handlers),)
    )
    await server.start()
    yield server
    await server.stop(0.1)


async def test_interceptor_counts_calls_by_method_and_status(server: Server) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        for name, times in [("Missing", 2), ("Broken", 1), ("Fine", 3)]:
            call = channel.unary_unary(f"/test.Probe/{name}")
            for _ in range(times):
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await call(b"", timeout=5)
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    metrics = server.metrics
    assert metrics is not None
    got = samples(metrics)

    def count(method: str, code: str) -> float:
        return got.get(("conveyor_grpc_requests_total", (("code", code), ("method", method))), 0)

    assert count("test.Probe/Missing", "NOT_FOUND") == 2
    assert count("test.Probe/Broken", "INTERNAL") == 1
    assert count("test.Probe/Fine", "OK") == 3
    assert count("grpc.health.v1.Health/Check", "OK") == 1
    timed = got[("conveyor_grpc_request_duration_seconds_count", (("method", "test.Probe/Fine"),))]
    assert timed == 3


async def test_health_watch_streams_status_changes(server: Server) -> None:
    # Health.Watch writes with context.write (a coroutine, not a generator): the error
    # interceptor once broke it with INTERNAL.
    async with grpc.aio.insecure_channel(server.address) as channel:
        call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        stream = call.__aiter__()
        first = await asyncio.wait_for(stream.__anext__(), 5)
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        await server.set_serving(False)
        second = await asyncio.wait_for(stream.__anext__(), 5)
        assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
        call.cancel()
    await asyncio.sleep(0.1)
    assert server.metrics is not None
    got = samples(server.metrics)
    key = (
        "conveyor_grpc_requests_total",
        (("code", "CANCELLED"), ("method", "grpc.health.v1.Health/Watch")),
    )
    assert got[key] == 1


def test_metrics_ports_from_the_environment() -> None:
    defaults: dict[Any, str] = {
        GatewaySettings: "127.0.0.1:9091",
        StoreSettings: "127.0.0.1:9092",
        SchedulerSettings: "127.0.0.1:9093",
        WorkerSettings: "127.0.0.1:9094",
    }
    for settings, default in defaults.items():
        assert settings.from_env({}).metrics_listen == default
        chosen = settings.from_env({"CONVEYOR_METRICS_LISTEN": "0.0.0.0:9999"})
        assert chosen.metrics_listen == "0.0.0.0:9999"
        assert settings.from_env({"CONVEYOR_METRICS_LISTEN": "off"}).metrics_listen == ""
    # Built in code (tests, embedding): any free loopback port, never a fixed one.
    assert WorkerSettings().metrics_listen == "127.0.0.1:0"


def test_a_bad_metrics_address_is_reported() -> None:
    with pytest.raises(ConfigError, match="CONVEYOR_METRICS_LISTEN='9091'"):
        StoreSettings.from_env({"CONVEYOR_METRICS_LISTEN": "9091"})


def test_dev_gives_each_service_its_own_metrics_port_and_prints_it(tmp_path: Path) -> None:
    args = argparse.Namespace(data_dir=str(tmp_path), workers=2)
    children, summary = plan(args, {})
    listens = {
        c.name: c.env["CONVEYOR_METRICS_LISTEN"] for c in children if c.name != "nats-server"
    }
    assert set(listens) == {"store", "worker-1", "worker-2", "scheduler", "gateway"}
    assert len(set(listens.values())) == len(listens)
    for name, listen in listens.items():
        assert f"http://{listen}/metrics" in summary[name]

    children, summary = plan(args, {"CONVEYOR_METRICS_LISTEN": "off"})
    assert all(c.env.get("CONVEYOR_METRICS_LISTEN", "off") == "off" for c in children)
    assert not any("metrics" in line for line in summary.values())
