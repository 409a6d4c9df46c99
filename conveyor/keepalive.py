"""gRPC keepalive of every Conveyor server and channel, and of the SDK, in one place.

Each side pings an idle connection every ``interval`` seconds, so a dead peer (or a load
balancer that dropped the connection) is noticed within ``interval + timeout`` rather
than at the next call. A server counts every ping that comes sooner than it permits as a
strike and, after two, ends the connection with GOAWAY ``too_many_pings``, failing every
call on it: so a server permits pings far more often than any Conveyor channel or SDK
client sends them (every :data:`PERMITTED_PING_SECONDS` at most), whatever interval each
side is configured with.
"""

from __future__ import annotations

from typing import Any

DEFAULT_INTERVAL_SECONDS = 30.0
"""How often channels and servers ping an idle connection (CONVEYOR_GRPC_KEEPALIVE_SECONDS);
the SDK's default too. Under the idle timeouts of common load balancers (60 s and more)."""
TIMEOUT_SECONDS = 10.0
"""How long a ping may go unanswered before the connection counts as dead."""
PERMITTED_PING_SECONDS = 5.0
"""The shortest time between a client's pings that a server accepts: below every
interval a channel or the SDK uses by default, so no client is told too_many_pings."""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _permitted(interval: float) -> float:
    """The ping interval a server permits: its own interval (what its peers are
    configured with) halved for jitter, and never longer than PERMITTED_PING_SECONDS."""
    return min(PERMITTED_PING_SECONDS, interval / 2)


def server_options(interval: float = DEFAULT_INTERVAL_SECONDS) -> list[tuple[str, Any]]:
    """Keepalive options of a gRPC server that pings every ``interval`` seconds."""
    return [
        ("grpc.keepalive_time_ms", _ms(interval)),
        ("grpc.keepalive_timeout_ms", _ms(TIMEOUT_SECONDS)),
        ("grpc.keepalive_permit_without_calls", 1),
        # The server's minimum between received pings (the name says nothing of receiving:
        # grpc's GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS).
        ("grpc.http2.min_ping_interval_without_data_ms", _ms(_permitted(interval))),
        ("grpc.http2.max_pings_without_data", 0),
    ]


def channel_options(interval: float = DEFAULT_INTERVAL_SECONDS) -> list[tuple[str, Any]]:
    """Keepalive options of a gRPC channel that pings every ``interval`` seconds, even
    with no call open (a broken connection is then noticed before the next call needs it)."""
    return [
        ("grpc.keepalive_time_ms", _ms(interval)),
        ("grpc.keepalive_timeout_ms", _ms(TIMEOUT_SECONDS)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
