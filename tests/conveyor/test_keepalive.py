"""The pings Conveyor's channels and the SDK send are ones the servers permit: a client
pinging faster than its server permits is told GOAWAY too_many_pings, ending its calls."""

from __future__ import annotations

import pytest

from conveyor import keepalive
from conveyor.client import channel_options

INTERVALS = [0.2, 5.0, 30.0, 300.0]


def option(options: list[tuple[str, object]], name: str) -> int:
    [value] = [v for k, v in options if k == name]
    assert isinstance(value, int)
    return value


def permitted_ms(server_interval: float) -> int:
    options = keepalive.server_options(server_interval)
    assert option(options, "grpc.keepalive_permit_without_calls") == 1
    return option(options, "grpc.http2.min_ping_interval_without_data_ms")


@pytest.mark.parametrize("interval", INTERVALS)
def test_a_server_permits_the_sdk_at_its_default_whatever_its_own_interval(
    interval: float,
) -> None:
    assert option(channel_options(), "grpc.keepalive_time_ms") >= permitted_ms(interval)


@pytest.mark.parametrize("interval", INTERVALS)
def test_a_server_permits_a_channel_with_the_same_interval(interval: float) -> None:
    sent = option(keepalive.channel_options(interval), "grpc.keepalive_time_ms")
    assert sent >= permitted_ms(interval)
