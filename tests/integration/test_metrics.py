"""Every service's /metrics, scraped over HTTP while the real system runs tasks: the
counters move by the right amounts, by type, and promtool accepts each exposition."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Mapping
from typing import Any

import pytest
from google.protobuf import struct_pb2
from prometheus_client.parser import text_string_to_metric_families

from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.context import TaskContext
from conveyor.errors import NonRetryable
from conveyor.ids import new_task_id
from conveyor.registry import Registry, RetryPolicy
from tests.conftest import NatsServer, System
from tests.support import promtool
from tests.support.helpers import wait_terminal

pytestmark = pytest.mark.integration

Labels = frozenset[tuple[str, str]]
Samples = dict[tuple[str, Labels], float]


async def ok(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    return {}


async def flaky_once(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    if ctx.attempt == 1:
        raise ConnectionError("the first attempt fails")
    return {}


async def doomed(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    raise NonRetryable("this input can never work")


async def sleepy(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(60)
    return {}


def registry() -> Registry:
    r = Registry()
    r.task("ok")(ok)
    r.task("flaky_once", retry=RetryPolicy(initial_delay=0.05, max_delay=0.1))(flaky_once)
    r.task("doomed")(doomed)
    r.task("sleepy", timeout=120)(sleepy)
    return r


def custom(task_type: str, options: S.TaskOptions | None = None) -> S.SubmitTaskRequest:
    return S.SubmitTaskRequest(
        custom=S.CustomTaskInput(type=task_type, payload=struct_pb2.Struct()), options=options
    )


def text(words: str = "count these words") -> S.SubmitTaskRequest:
    return S.SubmitTaskRequest(text_processing=S.TextProcessingInput(text=words))


async def scrape(address: str | None) -> tuple[bytes, Samples]:
    """GET /metrics over HTTP: the body and its samples by (name, labels)."""
    assert address is not None, "the service serves no /metrics"

    def get() -> bytes:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
            assert response.status == 200
            body: bytes = response.read()
            return body

    body = await asyncio.to_thread(get)
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    return body, samples


def key(name: str, **labels: str) -> tuple[str, Labels]:
    return name, frozenset(labels.items())


async def settled(address: str | None, expected: Mapping[tuple[str, Labels], float]) -> Samples:
    """Scrapes until every expected sample has its value (an outcome is counted just after
    its event is acknowledged, which may be after the store applied it)."""
    for _ in range(100):
        _, samples = await scrape(address)
        if all(samples.get(k, 0.0) == v for k, v in expected.items()):
            return samples
        await asyncio.sleep(0.1)
    wrong = {k: (samples.get(k), v) for k, v in expected.items() if samples.get(k, 0.0) != v}
    raise AssertionError(f"(sample): (scraped, expected): {wrong}")


async def wait_state(system: System, task_id: str, state: int) -> None:
    async with asyncio.timeout(20):
        while True:
            got = await system.stub.GetTask(S.GetTaskRequest(task_id=task_id))
            if got.task.state == state:
                return
            await asyncio.sleep(0.05)


async def test_counters_move_by_type_on_every_service(system: System) -> None:
    await system.start_store()
    worker = await system.start_worker(registry(), shutdown_grace_seconds=1.0)
    await system.start_gateway()
    await system.start_scheduler()
    assert system.store and system.gateway and system.scheduler
    stub = system.stub

    ids = [(await stub.SubmitTask(text())).task.id for _ in range(3)]
    ids += [(await stub.SubmitTask(custom("ok"))).task.id for _ in range(2)]
    once = S.TaskOptions(idempotency_key="metrics-test")
    first = await stub.SubmitTask(custom("ok", once))
    again = await stub.SubmitTask(custom("ok", once))
    assert again.deduplicated and again.task.id == first.task.id
    ids += [first.task.id]
    ids += [(await stub.SubmitTask(custom(t))).task.id for t in ("flaky_once", "doomed")]
    sleeper = (await stub.SubmitTask(custom("sleepy"))).task.id
    await wait_state(system, sleeper, S.TASK_STATE_RUNNING)
    await stub.CancelTask(S.CancelTaskRequest(task_id=sleeper))
    with pytest.raises(Exception, match="INVALID_ARGUMENT"):
        await stub.SubmitTask(S.SubmitTaskRequest())
    with pytest.raises(Exception, match="NOT_FOUND"):
        await stub.GetTask(S.GetTaskRequest(task_id=new_task_id()))
    states = [(await wait_terminal(stub, i)).state for i in [*ids, sleeper]]
    assert states.count(S.TASK_STATE_COMPLETED) == 7

    submit = "conveyor.api.tasks.v1.TaskService/SubmitTask"
    get = "conveyor.api.tasks.v1.TaskService/GetTask"
    gateway = await settled(
        system.gateway.metrics.address,
        {
            key("conveyor_tasks_submitted_total", type="text_processing"): 3,
            key("conveyor_tasks_submitted_total", type="ok"): 3,
            key("conveyor_tasks_submitted_total", type="flaky_once"): 1,
            key("conveyor_tasks_submitted_total", type="doomed"): 1,
            key("conveyor_tasks_submitted_total", type="sleepy"): 1,
            key("conveyor_tasks_deduplicated_total", type="ok"): 1,
            key("conveyor_grpc_requests_total", method=submit, code="OK"): 10,
            key("conveyor_grpc_requests_total", method=submit, code="INVALID_ARGUMENT"): 1,
            key("conveyor_grpc_requests_total", method=get, code="NOT_FOUND"): 1,
            key("conveyor_nats_connected"): 1,
        },
    )
    assert gateway[key("conveyor_grpc_request_duration_seconds_count", method=submit)] == 11

    started = {"text_processing": 3, "ok": 3, "flaky_once": 2, "doomed": 1, "sleepy": 1}
    outcomes = {
        ("completed", "text_processing"): 3,
        ("completed", "ok"): 3,
        ("completed", "flaky_once"): 1,
        ("retried", "flaky_once"): 1,
        ("failed", "doomed"): 1,
        ("cancelled", "sleepy"): 1,
    }
    expected = {key("conveyor_tasks_started_total", type=t): n for t, n in started.items()}
    expected |= {
        key("conveyor_task_run_duration_seconds_count", type=t): n for t, n in started.items()
    }
    # Queue wait counts first deliveries only: the retry of flaky_once waited on purpose.
    expected |= {
        key("conveyor_task_queue_wait_seconds_count", type=t): 1 if t == "flaky_once" else n
        for t, n in started.items()
    }
    for kind in ("completed", "retried", "failed", "cancelled"):
        for t in started:
            expected[key(f"conveyor_tasks_{kind}_total", type=t)] = outcomes.get((kind, t), 0)
    expected |= {key("conveyor_worker_tasks_in_flight", type=t): 0 for t in started}
    expected[key("conveyor_worker_concurrency")] = worker.settings.concurrency
    expected[key("conveyor_worker_stalled_consume_loops")] = 0
    await settled(worker.metrics.address, expected)

    store = system.store
    await store.lag_probe.poll()
    store_samples = await settled(
        store.metrics.address,
        {
            key("conveyor_store_apply_lag_events"): 0,
            key("conveyor_store_apply_lag_seconds"): 0,
            key("conveyor_grpc_requests_total", method=get, code="NOT_FOUND"): 1,
            key("conveyor_grpc_requests_total", method=submit, code="OK"): 0,
        },
    )
    assert store_samples[key("conveyor_store_applied_sequence")] > 0

    await system.scheduler.queue_probe.poll()
    _, scheduler = await scrape(system.scheduler.metrics.address)
    depths = {
        labels: value
        for (name, labels), value in scheduler.items()
        if name == "conveyor_queue_depth"
    }
    assert frozenset({("type", "ok"), ("priority", "normal")}) in depths
    assert set(depths.values()) == {0.0}

    for address in (
        system.gateway.metrics.address,
        worker.metrics.address,
        store.metrics.address,
        system.scheduler.metrics.address,
    ):
        body, _ = await scrape(address)
        promtool.check_metrics(body)


async def test_queue_depth_and_apply_lag_show_work_not_done(system: System) -> None:
    await system.start_store()
    worker = await system.start_worker()
    await system.start_gateway()
    await system.start_scheduler()
    assert system.store and system.scheduler
    await worker.stop()
    system.workers.clear()
    for _ in range(2):
        await system.stub.SubmitTask(text())

    await system.scheduler.queue_probe.poll()
    await settled(
        system.scheduler.metrics.address,
        {
            key("conveyor_queue_depth", type="text_processing", priority="normal"): 2,
            key("conveyor_queue_depth", type="image_processing", priority="normal"): 0,
            key("conveyor_queue_unacked", type="text_processing", priority="normal"): 0,
        },
    )

    # Once the store is caught up, stop it applying: the next event is one behind.
    store = system.store
    for _ in range(100):
        await store.lag_probe.poll()
        _, samples = await scrape(store.metrics.address)
        if samples[key("conveyor_store_apply_lag_events")] == 0:
            break
        await asyncio.sleep(0.05)
    # Its role is no longer decided either: the writer would start applying again.
    store._deciding.cancel()
    assert store._applying is not None
    store._applying.cancel()
    await asyncio.gather(store._deciding, store._applying, return_exceptions=True)
    await system.stub.SubmitTask(text())
    await asyncio.sleep(1.2)
    await store.lag_probe.poll()
    _, samples = await scrape(store.metrics.address)
    assert samples[key("conveyor_store_apply_lag_events")] == 1
    assert 1.0 <= samples[key("conveyor_store_apply_lag_seconds")] < 30


async def test_nats_reconnects_are_counted_by_every_service(
    system: System, nats_server: NatsServer
) -> None:
    await system.start_store()
    worker = await system.start_worker()
    await system.start_gateway()
    await system.start_scheduler()
    assert system.store and system.gateway and system.scheduler
    nats_server.stop()
    nats_server.start()
    back = {key("conveyor_nats_reconnects_total"): 1, key("conveyor_nats_connected"): 1}
    for service in (system.store, worker, system.gateway, system.scheduler):
        await settled(service.metrics.address, back)
    # And the system works on over the new connection.
    submitted = await system.stub.SubmitTask(text())
    task = await wait_terminal(system.stub, submitted.task.id)
    assert task.state == S.TASK_STATE_COMPLETED
