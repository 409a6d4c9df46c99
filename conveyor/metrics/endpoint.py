"""The ``/metrics`` endpoint: a minimal HTTP server on the event loop.

It also answers ``/livez`` and ``/readyz`` from the service's gRPC health (200 or 503):
Kubernetes' gRPC probes speak no TLS, while its HTTPS probes work against this port
when it serves TLS (they neither verify the certificate nor present one).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

REQUEST_TIMEOUT = 10.0
"""A scrape connection that sends no complete request within this is dropped."""


class MetricsEndpoint:
    """A minimal HTTP/1.1 server on the event loop answering ``GET /metrics``.

    An asyncio server rather than prometheus-client's thread: it opens and closes with
    the service, at once, and needs no locking around what it reads.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.address: str | None = None
        self._server: asyncio.Server | None = None
        self.health: Callable[[], tuple[bool, bool]] | None = None
        """(alive, ready), given by the service's gRPC server once it has one."""

    async def start(self, listen: str, tls: ssl.SSLContext | None = None) -> None:
        """Listens on host:port (with TLS when given); raises OSError with the address when
        it cannot."""
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        try:
            self._server = await asyncio.start_server(
                self._handle, host if host not in ("", "0.0.0.0") else None, int(port), ssl=tls
            )
        except OSError as exc:
            raise OSError(f"cannot serve metrics on {listen}: {exc.strerror or exc}") from exc
        bound = self._server.sockets[0].getsockname()[1]
        shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
        self.address = f"{shown}:{bound}"

    async def stop(self) -> None:
        """Stops listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            writer.write(self.respond(head))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def respond(self, head: bytes) -> bytes:
        """The whole HTTP response to a request head."""
        lines = head.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        }
        if method not in ("GET", "HEAD"):
            return _http(405, "text/plain", b"only GET\n", method)
        if path in ("/livez", "/readyz"):
            alive, ready = self.health() if self.health is not None else (False, False)
            ok = alive if path == "/livez" else ready
            return _http(200 if ok else 503, "text/plain", b"ok\n" if ok else b"no\n", method)
        if path not in ("/metrics", "/"):
            return _http(404, "text/plain", b"metrics are on /metrics\n", method)
        encoder, content_type = choose_encoder(headers.get("accept", ""))
        return _http(200, content_type, encoder(self.registry), method)


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def _http(status: int, content_type: str, body: bytes, method: str) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + (b"" if method == "HEAD" else body)
