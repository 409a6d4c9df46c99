"""``conveyor dev --secure`` makes its CA, certificates and admin key once and keeps them."""

from __future__ import annotations

import re
import stat
from pathlib import Path

from cryptography import x509

from conveyor.devsecure import SecureDev


def test_files_are_private_and_reused_across_restarts(tmp_path: Path) -> None:
    first = SecureDev.prepare(tmp_path)
    made = {p.name: p.read_bytes() for p in first.folder.iterdir()}
    assert {"ca.pem", "ca-key.pem", "store.pem", "store-key.pem", "admin.key"} <= set(made)
    for path in first.folder.iterdir():
        if path.name.endswith("-key.pem") or path.name == "admin.key":
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    assert stat.S_IMODE(first.folder.stat().st_mode) == 0o700
    again = SecureDev.prepare(tmp_path)
    assert {p.name: p.read_bytes() for p in again.folder.iterdir()} == made


def test_each_service_gets_its_identity_and_the_store_asks_for_client_certificates(
    tmp_path: Path,
) -> None:
    secure = SecureDev.prepare(tmp_path)
    store = secure.env("store")
    assert store["CONVEYOR_TLS_CLIENT_CA"] == str(secure.ca)
    gateway = secure.env("gateway")
    assert "CONVEYOR_TLS_CLIENT_CA" not in gateway
    assert gateway["CONVEYOR_AUTH"] == "keys"
    key = Path(gateway["CONVEYOR_ADMIN_KEY_FILE"]).read_text().strip()
    assert re.fullmatch(r"cvk_[a-f0-9]{12}_[A-Za-z0-9_-]{43,}", key)
    cert = x509.load_pem_x509_certificate(Path(gateway["CONVEYOR_TLS_CERT"]).read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "gateway.conveyor.internal" in names.get_values_for_type(x509.DNSName)


def test_a_certificate_of_another_ca_is_made_again(tmp_path: Path) -> None:
    first = SecureDev.prepare(tmp_path)
    (first.folder / "ca.pem").unlink()  # a new CA: what it did not sign must go
    second = SecureDev.prepare(tmp_path)
    assert second.certs["store"].cert.read_bytes() != b""
    old_ca = x509.load_pem_x509_certificate(second.ca.read_bytes())
    store = x509.load_pem_x509_certificate(second.certs["store"].cert.read_bytes())
    store.verify_directly_issued_by(old_ca)
