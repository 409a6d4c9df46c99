"""The SDK's connection settings: channel options and how a watch reconnects."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from conveyor import keepalive
from conveyor.config import MIB

MAX_MESSAGE_BYTES = 16 * MIB


def channel_options(
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    keepalive_seconds: float = keepalive.DEFAULT_INTERVAL_SECONDS,
) -> list[tuple[str, Any]]:
    """Channel options of the SDK: 16 MiB messages both ways, so a 10 MiB image fits, and
    a ping every ``keepalive_seconds`` on an idle connection, which the gateway permits."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        *keepalive.channel_options(keepalive_seconds),
    ]


@dataclass(frozen=True)
class WatchPolicy:
    """How :meth:`AsyncClient.watch` reconnects after the stream breaks.

    Up to ``max_reconnects`` attempts in a row that bring nothing new, waiting an
    exponentially growing, jittered delay between ``initial_backoff`` and ``max_backoff``
    seconds; any update received resets the count.
    """

    max_reconnects: int = 10
    initial_backoff: float = 0.2
    max_backoff: float = 5.0

    def backoff(self, failures: int) -> float:
        """The wait before reconnect number ``failures`` (from 1)."""
        ceiling = min(self.max_backoff, self.initial_backoff * 2.0 ** (failures - 1))
        # Jitter spreads the reconnects of many watchers after a gateway restart.
        return ceiling * (0.5 + random.random() / 2)
