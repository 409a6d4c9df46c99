"""TLS to NATS: with CONVEYOR_NATS_TLS_CA a service verifies the server and talks TLS;
without it, the server's certificate is not trusted."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conveyor import jetstream, subjects
from conveyor.config import CommonSettings
from tests.conftest import free_port


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1 it signed: (ca, cert, key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nats")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, paths[2])
    return paths


@pytest.fixture
def tls_nats(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A nats-server that requires TLS: its URL and the CA that signed its certificate."""
    ca, cert, key = certificates(tmp_path)
    port = free_port()
    config = tmp_path / "nats.conf"
    config.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f'jetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
        f'tls {{ cert_file: "{cert}", key_file: "{key}" }}\n'
    )
    server = subprocess.Popen(
        ["nats-server", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield f"nats://127.0.0.1:{port}", ca
    server.terminate()
    server.wait(timeout=10)


async def test_a_service_given_the_ca_connects_over_tls(tls_nats: tuple[str, Path]) -> None:
    url, ca = tls_nats
    settings = CommonSettings(nats_url=url, nats_tls_ca=str(ca))
    nc, js = await jetstream.setup(settings, "tls-check", role=subjects.STORE)
    try:
        assert nc.is_connected
        assert (await js.stream_info(subjects.STREAM_TASKS)).config.name == subjects.STREAM_TASKS
    finally:
        await jetstream.close(nc)


async def test_without_the_ca_the_servers_certificate_is_not_trusted(
    tls_nats: tuple[str, Path],
) -> None:
    url, _ = tls_nats
    with pytest.raises(ssl.SSLCertVerificationError):
        await nats.connect(url, allow_reconnect=False, connect_timeout=2)
