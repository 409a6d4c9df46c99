"""Per-namespace quotas at the gateway: a namespace past its unfinished tasks or its
submits per second is refused RESOURCE_EXHAUSTED naming the quota (QuotaFailure), nothing
is published, and other namespaces go on (against real servers)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from conveyor import subjects
from conveyor._client_errors import error_from_rpc
from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.config import NamespaceQuotas
from conveyor.errors import ResourceExhausted
from conveyor.intake.quotas import NAMESPACE_MAX_QUEUED, NAMESPACE_SUBMITS_PER_SECOND
from conveyor.tasks import duration
from tests.conftest import System
from tests.namespaces.support import A, B, meta, refused
from tests.support import custom_handlers
from tests.support.custom_system import custom
from tests.support.nats_client import jetstream

pytestmark = pytest.mark.integration


def delayed() -> S.SubmitTaskRequest:
    return custom("greet", S.TaskOptions(delay=duration(600)), name="later")


async def start(system: System, quotas: NamespaceQuotas) -> System:
    await system.start_store()
    await system.start_worker(custom_handlers.registry(), shutdown_grace_seconds=1.0)
    await system.start_gateway(namespace_quotas=quotas)
    return system


async def published(system: System) -> tuple[int, int]:
    """Messages in EVENTS and TASKS."""
    async with jetstream(system.common.nats_url) as js:
        events = await js.stream_info(subjects.STREAM_EVENTS)
        tasks = await js.stream_info(subjects.STREAM_TASKS)
        return events.state.messages, tasks.state.messages


async def quota_refusal(call: object) -> ResourceExhausted:
    error = await refused(call)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
    converted = error_from_rpc(error)
    assert isinstance(converted, ResourceExhausted)
    return converted


async def test_a_namespace_at_its_unfinished_tasks_is_refused_and_others_go_on(
    system: System,
) -> None:
    stub = (await start(system, NamespaceQuotas(max_queued=2))).stub
    for _ in range(2):
        await stub.SubmitTask(delayed(), metadata=meta(A))
    # Once the store has the two, a reading from it alone still holds the namespace back.
    await asyncio.sleep(0.6)
    listed = await stub.ListTasks(S.ListTasksRequest(), metadata=meta(A))
    assert len(listed.tasks) == 2
    before = await published(system)

    error = await quota_refusal(stub.SubmitTask(delayed(), metadata=meta(A)))
    assert error.limit == NAMESPACE_MAX_QUEUED
    assert A in error.message and "=2" in error.message
    batch = S.SubmitTasksRequest(requests=[delayed()])
    assert (await quota_refusal(stub.SubmitTasks(batch, metadata=meta(A)))).limit == (
        NAMESPACE_MAX_QUEUED
    )
    assert await published(system) == before  # nothing published for a refused submit

    for _ in range(2):
        await stub.SubmitTask(delayed(), metadata=meta(B))
    await stub.SubmitTask(delayed())  # default namespace

    # Finishing a task makes room again.
    first = listed.tasks[0]
    await stub.CancelTask(S.CancelTaskRequest(task_id=first.id), metadata=meta(A))
    async with asyncio.timeout(10):
        while True:
            try:
                await stub.SubmitTask(delayed(), metadata=meta(A))
                break
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                await asyncio.sleep(0.2)


async def test_a_namespace_past_its_submit_rate_is_refused_and_others_go_on(
    system: System,
) -> None:
    quotas = NamespaceQuotas(submits_per_second=3, submits_per_second_by_namespace={B: 100})
    stub = (await start(system, quotas)).stub
    for _ in range(3):
        await stub.SubmitTask(delayed(), metadata=meta(A))
    before = await published(system)
    error = await quota_refusal(stub.SubmitTask(delayed(), metadata=meta(A)))
    assert error.limit == NAMESPACE_SUBMITS_PER_SECOND
    assert A in error.message and "retry in" in error.message
    assert await published(system) == before

    # Another namespace has its own bucket, and this one a larger quota.
    for _ in range(10):
        await stub.SubmitTask(delayed(), metadata=meta(B))
    await asyncio.sleep(0.5)  # 1.5 tokens back
    await stub.SubmitTask(delayed(), metadata=meta(A))


def test_quotas_are_read_from_the_environment() -> None:
    from conveyor.config import GatewaySettings

    settings = GatewaySettings.from_env(
        {
            "CONVEYOR_NAMESPACE_MAX_QUEUED": "1000",
            "CONVEYOR_NAMESPACE_SUBMITS_PER_SECOND": "50",
            "CONVEYOR_NAMESPACE_MAX_QUEUED_BY_NAMESPACE": "big=100000, small=10",
            "CONVEYOR_NAMESPACE_SUBMITS_PER_SECOND_BY_NAMESPACE": "big=0",
        }
    ).namespace_quotas
    assert (settings.queued_limit("any"), settings.rate_limit("any")) == (1000, 50)
    assert (settings.queued_limit("big"), settings.rate_limit("big")) == (100_000, 0)
    assert settings.queued_limit("small") == 10
