"""The worker process: ``python -m worker [--types T ...] [--import module ...]``."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from conveyor import jetstream, subjects
from conveyor.api.events.v1 import events_pb2
from conveyor.config import ConfigError, WorkerSettings, load_environ
from conveyor.exposure import Listener, tls_missing
from conveyor.lifecycle import Lifecycle
from conveyor.metrics import WorkerMetrics
from conveyor.payloads import PayloadStore
from conveyor.registry import Registry, TaskType, default_registry
from conveyor.server import Server, run_service
from conveyor.tasks import duration, timestamp
from worker import registration
from worker.cancelled import CancelledTasks
from worker.consumer import Slots, TypeConsumer
from worker.events import EventPublisher
from worker.flow import Flow
from worker.handlers import register_builtins
from worker.health import ConsumeWatchdog
from worker.invoke import Invoker, ProcessSlots
from worker.metrics import Metrics
from worker.middleware import Cancellation, Heartbeat, Job, TimeLimit
from worker.outcomes import Retries
from worker.payloads import ResultCheck, restore_input
from worker.runner import Runner

log = logging.getLogger(__name__)


def type_spec(task_type: TaskType) -> events_pb2.TaskTypeSpec:
    """The registry entry of a type: the defaults the gateway applies at submit."""
    return events_pb2.TaskTypeSpec(
        type=task_type.name,
        max_attempts=task_type.max_attempts,
        timeout=duration(task_type.timeout),
        retry_policy=events_pb2.RetryPolicy(
            initial_delay=duration(task_type.retry.initial_delay),
            max_delay=duration(task_type.retry.max_delay),
            multiplier=task_type.retry.multiplier,
        ),
        description=task_type.description,
        register_time=timestamp(),
    )


class Worker:
    """A running worker serving some task types; ``start()`` then ``stop()``."""

    # Made by start(), which needs NATS.
    nc: NATS
    cancelled: CancelledTasks
    flow: Flow
    runner: Runner
    consumers: list[TypeConsumer]
    server: Server
    watchdog: ConsumeWatchdog

    def __init__(self, settings: WorkerSettings, registry: Registry | None = None) -> None:
        self.settings = settings
        if settings.nice:
            lower_priority(settings.nice)  # before the worker starts threads and processes
        self.registry = registry or default_registry
        register_builtins(self.registry)
        for module in settings.imports:
            importlib.import_module(module)  # registers the module's handlers
        unknown = [t for t in settings.types if t not in self.registry]
        if unknown:
            raise ConfigError([f"no handler is registered for task type {t!r}" for t in unknown])
        self.types = list(settings.types) or self.registry.names()
        self.slots = Slots(settings.concurrency)
        self.processes = ProcessSlots(settings.process_pool_size)
        self.cancellation = Cancellation()
        self._stopping = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._in_flight = self.slots.running
        self.metrics = WorkerMetrics(settings.concurrency)
        self._life = Lifecycle()
        self._registering: asyncio.Task[None] | None = None

    async def _stop_registering(self) -> None:
        if self._registering is not None:
            await _cancel_quietly(self._registering)

    async def start(self) -> None:
        common = self.settings.common
        life = self._life
        await self.metrics.serve(self.settings.metrics_listen, common.tls)
        life.on_stop(self.metrics.close)
        role = subjects.WORKER
        self.nc, js = await jetstream.setup(
            common, f"conveyor-worker-{self.settings.worker_id}", self.metrics, role
        )
        life.on_stop(jetstream.close, self.nc)
        create = jetstream.declares(common, role)
        buckets = await jetstream.ensure_buckets(js, common, create)
        invoker = Invoker(self.processes)
        payloads = PayloadStore(await jetstream.object_store(js, common, create))
        check = ResultCheck(
            payloads, self.settings.payload_inline_bytes, self.settings.max_result_bytes
        )

        async def invoke(job: Job) -> object:
            await restore_input(payloads, job.message)
            result = await invoker(job.task_type, job.message, job.ctx)
            return await check(job.ctx.task_id, job.ctx.attempt, result)

        nc = self.nc
        self.cancelled = CancelledTasks(
            buckets[subjects.KV_CANCELLED], lambda: int(nc.stats["reconnects"])
        )
        self.cancellation.cancelled = self.cancelled.ids
        await self.nc.subscribe(subjects.CANCEL_SUBJECT, cb=self._on_cancel)
        await self.cancelled.start()  # before any task is fetched
        life.on_stop(self.cancelled.stop)
        publisher = EventPublisher(js, self.settings.worker_id, self.nc)
        # Stopped after the tasks drained: their last outcomes are sent before NATS closes.
        life.on_stop(publisher.close)
        self.runner = Runner(
            self.registry,
            publisher,
            self.cancelled,
            invoke,  # type: ignore[arg-type]
            self.settings.start_event_delay_seconds,
            self.settings.progress_interval_seconds,
            [
                Metrics(self.metrics),
                Retries(),
                Heartbeat(self.settings.ack_wait_seconds),
                self.cancellation,
                TimeLimit(),
            ],
        )
        self.flow = Flow(
            buckets[subjects.KV_QUEUES],
            buckets[subjects.KV_PERMITS],
            self.settings.worker_id,
            self.settings.ack_wait_seconds,
        )
        await self.flow.start()
        life.on_stop(self.flow.stop)
        consumers = []
        for name in self.types:
            consumer = TypeConsumer(
                self.nc,
                js,
                name,
                self.settings.ack_wait_seconds,
                self.slots,
                self.runner.handle,
                self.flow,
            )
            await consumer.declare()
            consumers.append(consumer)
        self.consumers = consumers

        types_bucket = buckets[subjects.KV_TYPES]

        async def register(_: JetStreamContext | None = None) -> None:
            """Registers the served types (again after a reconnect: a server that came
            back without its JetStream state has an empty bucket). With credentials of
            its own the worker cannot write the bucket: the store checks and writes each
            type (store.registrar), and with no store answering yet this goes on in the
            background until one does. Without, anyone may write it, and so does the
            worker."""
            served = [self.registry.get(name) for name in self.types]
            specs = [type_spec(t) for t in served if t is not None]
            if not common.nats_authenticated:
                for spec in specs:
                    await types_bucket.put(spec.type, spec.SerializeToString())
            elif not await registration.register(self.nc, specs):
                log.info("no store answered yet: registering %s once one does", self.types)
                if self._registering is None or self._registering.done():
                    self._registering = asyncio.create_task(
                        registration.register_until_done(self.nc, specs), name="register-types"
                    )

        await register()
        life.on_stop(self._stop_registering)
        jetstream.after_reconnect(self.nc, register)
        # Made before the loops start, so that it stops after they have drained.
        self.server = Server(
            self.settings.listen,
            [],
            4 * 1024 * 1024,
            self.metrics,
            keepalive_seconds=self.settings.common.grpc_keepalive_seconds,
            tls=self.settings.common.tls,
        )
        life.server(self.server)
        life.on_stop_sync(self.processes.shutdown)
        self._loops = [
            asyncio.create_task(c.run(self._stopping), name=f"consume-{c.task_type}")
            for c in consumers
        ]
        life.on_stop(self._drain)
        await self.server.follow_nats(self.nc)
        await self.server.start()
        life.on_stop(self.server.set_serving, False)
        self.metrics.serve_types(self.types)
        self.watchdog = ConsumeWatchdog(
            lambda: zip(self.consumers, self._loops, strict=True),
            self._resting,
            self.server.set_serving,
            on_check=self.metrics.stalled_loops.set,
        )
        # Stopped first: it must not turn SERVING again while stopping.
        watching = asyncio.create_task(self.watchdog.run(), name="consume-watchdog")
        life.on_stop(_cancel_quietly, watching)
        log.info(
            "worker %s serving %s (concurrency %d, health on %s)",
            self.settings.worker_id,
            ", ".join(self.types),
            self.settings.concurrency,
            self.server.address,
        )

    def _resting(self, task_type: str) -> bool:
        """True while a consume loop waits on purpose: every slot busy, or its queue paused."""
        if self.slots.in_flight >= self.slots.limit:
            return True
        return self.flow.controls.paused(task_type)

    async def _on_cancel(self, msg: Msg) -> None:
        task_id = msg.data.decode(errors="replace")
        self.cancelled.add(task_id)
        if self.cancellation.cancel(task_id):
            log.info("cancelling running task %s", task_id)

    async def stop(self) -> None:
        """Stops fetching, lets in-flight tasks finish within the grace period, and hands
        the rest back for immediate redelivery."""
        await self._life.stop(1.0)
        log.info("worker stopped")

    async def _drain(self) -> None:
        """Ends the consume loops, then waits for the tasks they started (see stop)."""
        self._stopping.set()
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self._in_flight:
            log.info(
                "waiting up to %.0fs for %d tasks",
                self.settings.shutdown_grace_seconds,
                len(self._in_flight),
            )
            _, pending = await asyncio.wait(
                set(self._in_flight), timeout=self.settings.shutdown_grace_seconds
            )
            if pending:
                self.runner.shutting_down = True
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)


async def _cancel_quietly(task: asyncio.Task[None]) -> None:
    """Cancels a task and waits for it, whatever it ended with."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def lower_priority(nice: int) -> None:
    """Runs the calling thread, and the threads and processes it starts from then on, at
    niceness ``nice`` at least (Linux keeps it per thread). Never raises the priority."""
    if nice > os.getpriority(os.PRIO_PROCESS, 0):
        os.setpriority(os.PRIO_PROCESS, 0, nice)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m worker", description="Run a Conveyor worker.")
    parser.add_argument("--types", nargs="+", default=[], help="serve only these task types")
    parser.add_argument(
        "--import", dest="imports", nargs="+", default=[], help="modules registering handlers"
    )
    parser.add_argument("--concurrency", type=int, help="tasks run at once by this worker")
    parser.add_argument("--listen", help="health endpoint, host:port")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Reads settings (flags over CONVEYOR_* variables), sets up logging and serves."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    env = load_environ()
    if args.types:
        env["CONVEYOR_WORKER_TYPES"] = " ".join(args.types)
    if args.imports:
        env["CONVEYOR_WORKER_IMPORTS"] = " ".join(args.imports)
    if args.concurrency is not None:
        env["CONVEYOR_WORKER_CONCURRENCY"] = str(args.concurrency)
    if args.listen:
        env["CONVEYOR_WORKER_LISTEN"] = args.listen
    sys.path.insert(0, "")  # --import finds modules of the working directory
    run_service("worker", env, WorkerSettings.from_env, Worker, listeners)


def listeners(settings: WorkerSettings) -> list[Listener]:
    """Where a worker listens: health and metrics, over TLS."""
    tls = settings.common.tls
    return [
        Listener("WORKER_LISTEN", settings.listen, tls_missing(tls)),
        Listener("METRICS_LISTEN", settings.metrics_listen, tls_missing(tls)),
    ]
