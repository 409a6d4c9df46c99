"""TLS of every server and of the calls between services, from PEM files that may rotate.

Servers read ``CONVEYOR_TLS_CERT``/``CONVEYOR_TLS_KEY`` (and ``CONVEYOR_TLS_CLIENT_CA`` for
mutual TLS) through :class:`CertificateFiles`, which notices when the files change and
serves the new certificate to the next connection: cert-manager renews a mounted Secret
in place, and no service needs a restart for it. gRPC servers get the files through
``grpc.dynamic_ssl_server_credentials``; the HTTP servers (``/metrics``, the gateway's
HTTP door) through an ``ssl.SSLContext`` swapped during the handshake. Channels to other
services follow the same files by moving to a new channel (conveyor.renewing).
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Iterable, Mapping
from pathlib import Path

import grpc

from conveyor.config import ClientSettings, TlsSettings

log = logging.getLogger(__name__)

SAN_KEY = "x509_subject_alternative_name"
CN_KEY = "x509_common_name"


class CertificateFiles:
    """A certificate, its key and optionally a client CA, read again once they change.

    A channel's files (:meth:`of_calls`) are the client certificate, if any, and in
    ``client_ca`` the CA that verifies the server called: the peer's CA either way."""

    def __init__(self, cert: str, key: str, client_ca: str = "") -> None:
        self.paths = [p for p in (cert, key, client_ca) if p]
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self._stamp = self._stat()
        self._pem = self._read()
        self._context: ssl.SSLContext | None = None
        self._alpn: list[str] = []
        self.generation = 0
        """Counts reloads, so each server using these files notices each one."""

    @staticmethod
    def of(tls: TlsSettings) -> CertificateFiles | None:
        """The files of ``tls``, or None when it serves no TLS."""
        return CertificateFiles(tls.cert, tls.key, tls.client_ca) if tls.enabled else None

    @staticmethod
    def of_calls(tls: TlsSettings) -> CertificateFiles | None:
        """The files of ``tls``'s calls to other services, or None when they are plaintext."""
        return CertificateFiles(tls.cert, tls.key, tls.ca) if tls.ca else None

    def _stat(self) -> tuple[tuple[int, int], ...]:
        # A mounted Secret changes by an atomic symlink swap: stat follows it.
        return tuple((s.st_mtime_ns, s.st_size) for s in map(os.stat, self.paths))

    def _read(self) -> tuple[bytes, bytes, bytes | None]:
        # Only a channel's files may lack a certificate: a server's always have one.
        cert = Path(self.cert).read_bytes() if self.cert else b""
        key = Path(self.key).read_bytes() if self.key else b""
        ca = Path(self.client_ca).read_bytes() if self.client_ca else None
        return cert, key, ca

    def refresh(self) -> bool:
        """Reads the files again if they changed and are a usable pair; True when they
        did. A half-written or mismatched pair is logged and the previous one kept."""
        try:
            stamp = self._stat()
            if stamp == self._stamp:
                return False
            self._stamp = stamp
            context = self._new_context()
            pem = self._read()
        except (OSError, ssl.SSLError) as exc:
            log.error("keeping the previous TLS certificate: cannot load the new one: %s", exc)
            return False
        self._pem, self._context = pem, context
        self.generation += 1
        log.info("TLS certificate reloaded from %s", self.paths[0])
        return True

    def server_credentials(self) -> grpc.ServerCredentials:
        """gRPC server credentials serving the current files to each new connection, and
        requiring a client certificate signed by the client CA when there is one."""

        def configuration() -> grpc.ServerCertificateConfiguration:
            cert, key, ca = self._pem
            return grpc.ssl_server_certificate_configuration([(key, cert)], ca)

        served = [self.generation]

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            # Called by gRPC before each handshake; None keeps the current configuration.
            self.refresh()
            if served[0] == self.generation:
                return None
            served[0] = self.generation
            return configuration()

        return grpc.dynamic_ssl_server_credentials(
            configuration(), fetch, require_client_authentication=bool(self.client_ca)
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials of the current files: trusting the CA, presenting the
        certificate when there is one."""
        cert, key, ca = self._pem
        return grpc.ssl_channel_credentials(ca, key or None, cert or None)

    def _new_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        if self.cert:
            context.load_cert_chain(self.cert, self.key)
        if self.client_ca:
            context.load_verify_locations(self.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        if self._alpn:
            context.set_alpn_protocols(self._alpn)
        return context

    def ssl_context(self, alpn: Iterable[str] = ()) -> ssl.SSLContext:
        """A server SSLContext (HTTP): each new connection starts on it and moves, during
        its handshake, to a context of the current files."""
        self._alpn = list(alpn)
        self._context = self._new_context()

        def on_hello(sock: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
            self.refresh()
            if self._context is not None and sock.context is not self._context:
                sock.context = self._context

        entry = self._new_context()
        # Called on every ClientHello, with or without a server name in it.
        entry.sni_callback = on_hello
        return entry


def channel_credentials(
    ca: str = "", cert: str = "", key: str = "", system_roots: bool = False
) -> grpc.ChannelCredentials | None:
    """TLS credentials of a channel: trusting the PEM CA file ``ca`` (or the system's roots
    when ``system_roots``), presenting the client certificate ``cert``/``key`` when given.
    None when neither a CA nor system roots are asked for: a plaintext channel."""
    if not ca and not system_roots:
        return None
    roots = Path(ca).read_bytes() if ca else None
    chain = Path(cert).read_bytes() if cert else None
    private = Path(key).read_bytes() if key else None
    return grpc.ssl_channel_credentials(roots, private, chain)


def client_credentials(settings: ClientSettings) -> grpc.ChannelCredentials | None:
    """The SDK's and CLI's channel credentials from CONVEYOR_TLS_CA or CONVEYOR_TLS=1 (and
    CONVEYOR_TLS_CLIENT_CERT/KEY); None (plaintext) when neither is set."""
    return channel_credentials(
        settings.tls_ca, settings.tls_client_cert, settings.tls_client_key, settings.tls
    )


def peer_names(auth_context: Mapping[str, Iterable[bytes]]) -> set[str]:
    """The identities a verified client certificate claims: its SANs, else its CN."""
    names = {v.decode("utf-8", "replace") for v in auth_context.get(SAN_KEY, ())}
    if not names:
        names = {v.decode("utf-8", "replace") for v in auth_context.get(CN_KEY, ())}
    return names
