"""A private CA and one certificate per service, for ``conveyor dev --secure`` and tests.

Files live in one folder (``.conveyor/tls/``): ``ca.pem``/``ca-key.pem`` and
``<name>.pem``/``<name>-key.pem``, keys readable by their owner only. A certificate is
reused while it is valid for at least :data:`RENEW_BEFORE` more, was signed by the CA in
the folder and names the same hosts; otherwise it is made again.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
CERT_DAYS = 365
RENEW_BEFORE = datetime.timedelta(days=7)
INTERNAL_DOMAIN = "conveyor.internal"
"""Service identities are ``<service>.conveyor.internal`` (the store's allowed peers)."""


@dataclass(frozen=True)
class Issued:
    """Paths of one certificate and its key."""

    cert: Path
    key: Path


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


def _load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _fresh(cert: x509.Certificate | None) -> bool:
    return cert is not None and cert.not_valid_after_utc - _now() > RENEW_BEFORE


class LocalCA:
    """The CA in ``folder``, made on first use."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        self.cert_path = folder / "ca.pem"
        self.key_path = folder / "ca-key.pem"
        cert = _load_cert(self.cert_path)
        if _fresh(cert) and self.key_path.is_file():
            assert cert is not None
            loaded = serialization.load_pem_private_key(self.key_path.read_bytes(), None)
            assert isinstance(loaded, ec.EllipticCurvePrivateKey)
            self.cert, self.key = cert, loaded
        else:
            self.cert, self.key = self._make()

    def _make(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Conveyor local CA")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        _write_key(self.key_path, key)
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert, key

    def _signed_by_me(self, cert: x509.Certificate) -> bool:
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def issue(self, name: str, hosts: Sequence[str]) -> Issued:
        """``<name>.pem`` for ``hosts`` (DNS names or IP addresses; the first is the CN),
        usable as server and client certificate; reused while fresh."""
        paths = Issued(self.folder / f"{name}.pem", self.folder / f"{name}-key.pem")
        existing = _load_cert(paths.cert)
        if (
            existing is not None
            and _fresh(existing)
            and paths.key.is_file()
            and self._signed_by_me(existing)
            and _hosts(existing) == set(hosts)
        ):
            return paths
        key = ec.generate_private_key(ec.SECP256R1())
        alt_names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alt_names.append(x509.DNSName(host))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + datetime.timedelta(days=CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        _write_key(paths.key, key)
        paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return paths


def _hosts(cert: x509.Certificate) -> set[str]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(n.value) for n in names if isinstance(n, x509.DNSName | x509.IPAddress)}


def service_identity(service: str) -> str:
    """The DNS name a service's certificate carries as its identity."""
    return f"{service}.{INTERNAL_DOMAIN}"
