"""Certificates for TLS tests: a CA, one certificate per service, and an intruder's."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import grpc

from conveyor.certs import Issued, LocalCA, service_identity
from conveyor.config import TlsSettings
from conveyor.tls import channel_credentials

LOOPBACK = ["localhost", "127.0.0.1"]


def mount(issued: Issued, folder: Path) -> TlsSettings:
    """Puts a certificate where a mounted Secret would be, replacing what is there."""
    for source, name in ((issued.cert, "tls.crt"), (issued.key, "tls.key")):
        shutil.copy(source, folder / f".{name}")
        os.replace(folder / f".{name}", folder / name)
    return TlsSettings(cert=str(folder / "tls.crt"), key=str(folder / "tls.key"))


@dataclass
class Pki:
    """A CA in ``folder`` and what it issued."""

    folder: Path
    ca: LocalCA

    @staticmethod
    def make(folder: Path) -> Pki:
        return Pki(folder, LocalCA(folder))

    @property
    def ca_file(self) -> str:
        return str(self.ca.cert_path)

    def issue(self, name: str) -> Issued:
        """A certificate naming ``<name>.conveyor.internal`` and the loopback addresses."""
        return self.ca.issue(name, [service_identity(name), *LOOPBACK])

    def settings(self, name: str, mutual: bool = False) -> TlsSettings:
        """A service's TLS settings: its certificate, trusting this CA for its calls, and
        asking callers for a certificate of this CA when ``mutual``."""
        issued = self.issue(name)
        return TlsSettings(
            cert=str(issued.cert),
            key=str(issued.key),
            client_ca=self.ca_file if mutual else "",
            ca=self.ca_file,
        )

    def credentials(self, name: str | None = None) -> grpc.ChannelCredentials:
        """A client trusting this CA, presenting ``name``'s certificate when given."""
        if name is None:
            credentials = channel_credentials(self.ca_file)
        else:
            issued = self.issue(name)
            credentials = channel_credentials(self.ca_file, str(issued.cert), str(issued.key))
        assert credentials is not None
        return credentials
