"""The scheduler process: ``python -m scheduler``.

Delayed tasks need no process of ours: the gateway queues them as NATS message schedules,
which the server itself fires at their time, across restarts. The scheduler runs the
background jobs that keep the system whole (see ``scheduler.reconcile``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

import grpc
from nats.aio.client import Client as NATS

from conveyor import jetstream
from conveyor.api.tasks.v1 import tasks_pb2_grpc
from conveyor.config import ConfigError, SchedulerSettings, load_environ
from conveyor.logs import setup_logging
from conveyor.server import Server, run, stop_on_signals
from scheduler.reconcile import Reconciler

log = logging.getLogger(__name__)


class Scheduler:
    """A running scheduler; ``start()`` then ``stop()``."""

    def __init__(self, settings: SchedulerSettings) -> None:
        self.settings = settings
        self.nc: NATS | None = None
        self.server: Server | None = None
        self.channel: grpc.aio.Channel | None = None
        self._jobs: list[asyncio.Task[None]] = []

    @property
    def address(self) -> str:
        assert self.server is not None
        return self.server.address

    async def start(self) -> None:
        self.nc, js = await jetstream.setup(self.settings.common, "conveyor-scheduler")
        self.channel = grpc.aio.insecure_channel(self.settings.store_addr)
        reconciler = Reconciler(js, tasks_pb2_grpc.TaskServiceStub(self.channel))
        self._jobs = [asyncio.create_task(reconciler.run(), name="reconcile")]
        self.server = Server(self.settings.listen, [], 4 * 1024 * 1024)
        await self.server.start()
        log.info("scheduler running, health on %s", self.address)

    async def stop(self) -> None:
        if self.server:
            await self.server.stop(1.0)
        for job in self._jobs:
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job
        if self.channel:
            await self.channel.close()
        if self.nc:
            await jetstream.close(self.nc)
        log.info("scheduler stopped")


async def serve(settings: SchedulerSettings) -> None:
    """Runs the scheduler until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    stop_on_signals(stop)
    scheduler = Scheduler(settings)
    await scheduler.start()
    await stop.wait()
    await scheduler.stop()


def main() -> None:
    """Reads settings, sets up logging once and serves."""
    try:
        settings = SchedulerSettings.from_env(load_environ())
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from exc
    setup_logging("scheduler", settings.common.log_level, settings.common.log_format)
    run(lambda: serve(settings))
