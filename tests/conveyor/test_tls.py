"""Every server serves TLS from files that may rotate, and its /metrics port too."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conveyor.metrics import ServiceMetrics
from conveyor.server import Server
from tests.support.tls import Pki, mount

pytestmark = pytest.mark.integration

# A fresh connection per channel: gRPC would otherwise share one between equal channels.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.make(tmp_path / "pki")


@pytest.fixture
def other_pki(tmp_path: Path) -> Pki:
    return Pki.make(tmp_path / "other")


async def check(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    """The status code of one health check over a new connection."""
    if credentials is None:
        channel = grpc.aio.insecure_channel(address, options=OWN_CONNECTION)
    else:
        channel = grpc.aio.secure_channel(address, credentials, options=OWN_CONNECTION)
    async with channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


@pytest.fixture
async def tls_server(pki: Pki, tmp_path: Path) -> AsyncIterator[tuple[Server, Path]]:
    """A server whose certificate files live in their own folder, as a mounted Secret."""
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    tls = mount(pki.issue("scheduler"), mounted)
    server = Server("127.0.0.1:0", [], 4 * 1024 * 1024, tls=tls)
    await server.start()
    yield server, mounted
    await server.stop(0)


async def test_a_tls_server_answers_a_client_trusting_its_ca_only(
    tls_server: tuple[Server, Path], pki: Pki, other_pki: Pki
) -> None:
    server, _ = tls_server
    assert await check(server.address, pki.credentials()) == grpc.StatusCode.OK
    assert await check(server.address, None) == grpc.StatusCode.UNAVAILABLE
    assert await check(server.address, other_pki.credentials()) == grpc.StatusCode.UNAVAILABLE


async def test_a_renewed_certificate_is_served_without_a_restart(
    tls_server: tuple[Server, Path], pki: Pki, other_pki: Pki
) -> None:
    server, mounted = tls_server
    assert await check(server.address, other_pki.credentials()) == grpc.StatusCode.UNAVAILABLE
    # As cert-manager renews a Secret: new files swapped in, the process left running.
    mount(other_pki.issue("scheduler"), mounted)
    assert await check(server.address, other_pki.credentials()) == grpc.StatusCode.OK
    assert await check(server.address, pki.credentials()) == grpc.StatusCode.UNAVAILABLE


async def test_a_broken_renewal_keeps_the_certificate_being_served(
    tls_server: tuple[Server, Path], pki: Pki
) -> None:
    server, mounted = tls_server
    (mounted / "tls.key").write_text("not a key")
    assert await check(server.address, pki.credentials()) == grpc.StatusCode.OK


async def test_metrics_and_health_probes_are_served_over_tls(pki: Pki, other_pki: Pki) -> None:
    metrics = ServiceMetrics("scheduler")
    tls = pki.settings("scheduler")
    await metrics.serve("127.0.0.1:0", tls)
    server = Server("127.0.0.1:0", [], 4 * 1024 * 1024, metrics, tls=tls)
    await server.start()
    try:
        trusted = ssl.create_default_context(cafile=pki.ca_file)
        async with httpx.AsyncClient(verify=trusted) as client:
            assert metrics.address is not None
            base = f"https://localhost:{metrics.address.rpartition(':')[2]}"
            scraped = await client.get(f"{base}/metrics")
            assert scraped.status_code == 200
            assert "conveyor_nats_connected" in scraped.text
            assert (await client.get(f"{base}/readyz")).status_code == 200
            assert (await client.get(f"{base}/livez")).status_code == 200
            await server.set_dependency("nats", False)
            assert (await client.get(f"{base}/readyz")).status_code == 503
            assert (await client.get(f"{base}/livez")).status_code == 200
        async with httpx.AsyncClient() as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get(f"http://{metrics.address}/metrics")
        stranger = ssl.create_default_context(cafile=other_pki.ca_file)
        async with httpx.AsyncClient(verify=stranger) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"{base}/metrics")
    finally:
        await server.stop(0)
        await metrics.close()


async def test_a_probe_reads_the_health_of_a_plaintext_service_on_its_metrics_port() -> None:
    metrics = ServiceMetrics("worker")
    await metrics.serve("127.0.0.1:0")
    async with httpx.AsyncClient() as client:
        url = f"http://{metrics.address}/livez"
        assert (await client.get(url)).status_code == 503  # no gRPC server yet: starting
        server = Server("127.0.0.1:0", [], 4 * 1024 * 1024, metrics)
        await server.start()
        assert (await client.get(url)).status_code == 200
        await server.stop(0)
        assert (await client.get(url)).status_code == 503
    await metrics.close()
    await asyncio.sleep(0)


async def metrics_status(url: str, pki: Pki) -> int | str:
    verify = ssl.create_default_context(cafile=pki.ca_file)
    async with httpx.AsyncClient(verify=verify) as client:
        try:
            return (await client.get(url)).status_code
        except httpx.ConnectError:
            return "refused"


async def test_a_renewed_certificate_is_served_on_the_metrics_port_too(
    pki: Pki, other_pki: Pki, tmp_path: Path
) -> None:
    metrics = ServiceMetrics("store")
    await metrics.serve("127.0.0.1:0", mount(pki.issue("store"), tmp_path))
    assert metrics.address is not None
    url = f"https://localhost:{metrics.address.rpartition(':')[2]}/metrics"
    try:
        assert await metrics_status(url, pki) == 200
        assert await metrics_status(url, other_pki) == "refused"
        mount(other_pki.issue("store"), tmp_path)
        assert await metrics_status(url, other_pki) == 200
        assert await metrics_status(url, pki) == "refused"
    finally:
        await metrics.close()
