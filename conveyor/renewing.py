"""A channel between services that follows its client certificate's renewals.

gRPC Python has dynamic credentials for servers only: a channel presents the certificate
it was made with to every connection it ever makes. So that a gateway or scheduler running
past its certificate's expiry keeps reaching the store, :class:`RenewingChannel` checks the
files every few seconds and, when they changed and load, opens a new channel with them and
moves every later call to it. The previous channel gets a grace period for the calls it
carries, then is closed; the gateway's watch stream on it is resumed on the new one from
the last version each watch saw (gateway.watch).

Multicallables (and the stubs made of them) are made once and follow the swaps: each looks
at the channel's generation when called, and only after a swap makes its multicallable on
the new channel, so a call costs one comparison more than on a plain channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

import grpc

from conveyor.config import TlsSettings
from conveyor.tls import CertificateFiles

log = logging.getLogger(__name__)

RELOAD_SECONDS = TlsSettings.reload_seconds
"""How often the files are looked at: far inside the 30 days cert-manager leaves between a
renewal and the expiry, and only a stat of each file."""
GRACE_INTERVALS = 2
"""A replaced channel's calls get this many check intervals (60 s by default) to finish: a
relayed call's own limit is 10 s (gateway.relay); streams still open then are cancelled."""

Options = list[tuple[str, Any]]


def service_channel(
    target: str,
    tls: TlsSettings,
    options: Options,
    interceptors: Iterable[grpc.aio.ClientInterceptor] | None = None,
) -> grpc.aio.Channel:
    """A channel from one service to another (gateway and scheduler to the store): mutual
    TLS with the service's own certificate, following its renewals, when
    ``CONVEYOR_TLS_CA`` is set; else plaintext. Made inside the running event loop."""
    files = CertificateFiles.of_calls(tls)
    if files is None:
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
    return RenewingChannel(target, files, options, interceptors, tls.reload_seconds)


class RenewingChannel(grpc.aio.Channel):  # type: ignore[misc]
    """A ``grpc.aio.Channel`` presenting the current certificate of ``files``.

    Made inside a running event loop, whose task checks the files every
    ``reload_seconds``; :meth:`close` stops it and closes every channel it opened."""

    def __init__(
        self,
        target: str,
        files: CertificateFiles,
        options: Options,
        interceptors: Iterable[grpc.aio.ClientInterceptor] | None = None,
        reload_seconds: float = RELOAD_SECONDS,
    ) -> None:
        self.target = target
        self._files = files
        self._options = options
        self._interceptors = list(interceptors) if interceptors is not None else None
        self._reload_seconds = reload_seconds
        self.generation = 0
        """Counts the channels opened; a multicallable made on an older one is remade."""
        self.current = self._open()
        self._retiring: dict[grpc.aio.Channel, asyncio.Task[None]] = {}
        self._follower = asyncio.get_running_loop().create_task(self._follow(), name="tls-renewal")

    def _open(self) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(
            self.target,
            self._files.channel_credentials(),
            options=self._options,
            interceptors=self._interceptors,
        )

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self._reload_seconds)
            try:
                self.renew()
            except Exception:
                # A loop that died here would leave the service to its certificate's expiry.
                log.exception("checking the TLS files of the channel to %s failed", self.target)

    def renew(self) -> bool:
        """Opens a channel with the files if they changed and load (True); otherwise keeps
        the current one (CertificateFiles logs a renewal that does not load, once)."""
        if not self._files.refresh():
            return False
        previous, self.current = self.current, self._open()
        self.generation += 1
        grace = GRACE_INTERVALS * self._reload_seconds
        self._retiring[previous] = asyncio.get_running_loop().create_task(
            self._retire(previous, grace), name="tls-renewal-retire"
        )
        log.info(
            "calls to %s now present the renewed certificate; the previous channel closes "
            "in %.0f s",
            self.target,
            grace,
        )
        return True

    async def _retire(self, channel: grpc.aio.Channel, grace: float) -> None:
        await channel.close(grace)
        self._retiring.pop(channel, None)

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> _Method:
        return _Method(self, "unary_unary", method, args, kwargs)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> _Method:
        return _Method(self, "unary_stream", method, args, kwargs)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> _Method:
        return _Method(self, "stream_unary", method, args, kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> _Method:
        return _Method(self, "stream_stream", method, args, kwargs)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self.current.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self.current.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self.current.channel_ready()

    async def close(self, grace: float | None = None) -> None:
        """Stops following the files and closes the current channel (with ``grace``) and
        any replaced one still in its grace period (at once)."""
        self._follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._follower
        for channel, task in list(self._retiring.items()):
            task.cancel()
            await channel.close()
        self._retiring.clear()
        await self.current.close(grace)

    async def __aenter__(self) -> RenewingChannel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.close()


class _Method:
    """A multicallable of a :class:`RenewingChannel`: the one of its current channel, made
    with the same arguments (serializers, ``_registered_method``)."""

    __slots__ = ("_args", "_callable", "_channel", "_generation", "_kind", "_kwargs", "_method")

    def __init__(
        self,
        channel: RenewingChannel,
        kind: str,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self._channel, self._kind, self._method = channel, kind, method
        self._args, self._kwargs = args, kwargs
        self._generation = -1
        self._callable: Callable[..., Any] = self._remake()

    def _remake(self) -> Callable[..., Any]:
        self._generation = self._channel.generation
        make = getattr(self._channel.current, self._kind)
        self._callable = make(self._method, *self._args, **self._kwargs)
        return self._callable

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._generation != self._channel.generation:
            return self._remake()(*args, **kwargs)
        return self._callable(*args, **kwargs)


def generation(channel: grpc.aio.Channel) -> int:
    """How many times ``channel`` moved to a renewed certificate (0 for a plain channel)."""
    return channel.generation if isinstance(channel, RenewingChannel) else 0
