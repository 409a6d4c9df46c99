"""The streams' limits: applied to streams a running system already has, and a clear
error when JetStream's storage cannot hold them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from nats.js.api import DiscardPolicy

from conveyor import jetstream, subjects
from conveyor.config import MIB, CommonSettings, StreamLimits
from tests.conftest import NatsServer

LIMITS = StreamLimits(events_max_bytes=4 * MIB)


async def test_streams_declared_without_limits_get_them_in_place(common: CommonSettings) -> None:
    nc = await jetstream.connect(common, "test")
    js = nc.jetstream()
    try:
        # EVENTS as an earlier version declared it: no size, old messages dropped first.
        old = next(c for c in jetstream.stream_configs(common) if c.name == subjects.STREAM_EVENTS)
        await js.add_stream(replace(old, max_bytes=-1, discard=DiscardPolicy.OLD))
        await js.publish(subjects.event_subject(subjects.WORKER, "greet"), b"kept")

        limited = replace(common, stream_limits=LIMITS)
        await jetstream.ensure_streams(js, limited)
        await jetstream.ensure_streams(js, limited)  # again: nothing to change

        info = await js.stream_info(subjects.STREAM_EVENTS)
        assert info.config.max_bytes == 4 * MIB
        assert info.config.discard == DiscardPolicy.NEW
        assert info.state.messages == 1
    finally:
        await jetstream.close(nc)


async def test_an_events_stream_larger_than_the_storage_is_a_clear_error(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "small")
    server.data_dir.mkdir()
    server.jetstream_options = "max_file_store: 8MB"
    server.start()
    try:
        settings = CommonSettings(
            nats_url=server.url, stream_limits=StreamLimits(events_max_bytes=64 * MIB)
        )
        with pytest.raises(jetstream.StorageTooSmall, match="CONVEYOR_EVENTS_MAX_BYTES"):
            await jetstream.setup(settings, "test")
    finally:
        server.stop()
