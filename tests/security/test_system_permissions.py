"""The whole system runs with one NATS user per role and only that role's permissions
(conveyor.natsauth, as ``conveyor dev`` runs it): everything a user does works, and
nats-server logs no permission violation."""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf import struct_pb2
from nats.aio.client import Client as NATS

from conveyor import jetstream, messages, subjects
from conveyor.api.queues.v1 import queues_pb2 as Q
from conveyor.api.queues.v1 import queues_pb2_grpc
from conveyor.api.schedules.v1 import schedules_pb2 as P
from conveyor.api.schedules.v1 import schedules_pb2_grpc
from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.api.tasks.v1 import tasks_pb2_grpc
from conveyor.tasks import duration
from scheduler.reconcile import Reconciler
from tests.conftest import NatsServer, System, role_settings
from tests.scheduler.test_reconcile import orphan_event
from tests.security.conftest import violations
from tests.support import custom_handlers
from tests.support.helpers import wait_terminal


async def connect_as(server: NatsServer, role: str) -> NATS:
    return await jetstream.connect(role_settings(server, role), f"test-{role}", role=role)


def greet(name: str) -> S.SubmitTaskRequest:
    payload = struct_pb2.Struct()
    payload.update({"name": name})
    return S.SubmitTaskRequest(custom=S.CustomTaskInput(type="greet", payload=payload))


async def test_the_system_runs_every_path_with_its_roles_permissions_and_no_violation(
    secure_system: System, secure_nats: NatsServer
) -> None:
    # Start-up order does not matter: the worker waits for the store to declare.
    worker = asyncio.create_task(secure_system.start_worker(custom_handlers.registry()))
    await asyncio.sleep(1.0)
    assert not worker.done()
    await secure_system.start_store()
    await asyncio.wait_for(worker, 30)
    await secure_system.start_gateway()
    await secure_system.start_scheduler()
    stub = secure_system.stub
    assert secure_system.channel is not None

    # A task to completion, and a large input (the object store's claim check).
    done = await wait_terminal(stub, (await stub.SubmitTask(greet("you"))).task.id)
    assert done.state == S.TASK_STATE_COMPLETED
    big = S.SubmitTaskRequest(text_processing=S.TextProcessingInput(text="word " * 100_000))
    big_task = (await stub.SubmitTask(big)).task.id
    assert (await wait_terminal(stub, big_task)).state == S.TASK_STATE_COMPLETED

    # Cancel a running task (the cancel event and signal), then re-drive it.
    sleeper = S.SubmitTaskRequest(custom=S.CustomTaskInput(type="sleeper"))
    running = (await stub.SubmitTask(sleeper)).task
    async with asyncio.timeout(30):
        while (
            await stub.GetTask(S.GetTaskRequest(task_id=running.id))
        ).task.state != S.TASK_STATE_RUNNING:
            await asyncio.sleep(0.05)
    await stub.CancelTask(S.CancelTaskRequest(task_id=running.id))
    cancelled = await wait_terminal(stub, running.id)
    assert cancelled.state == S.TASK_STATE_CANCELLED
    await stub.RetryTask(S.RetryTaskRequest(task_id=running.id))
    await stub.CancelTask(S.CancelTaskRequest(task_id=running.id))
    assert (await wait_terminal(stub, running.id)).state == S.TASK_STATE_CANCELLED

    # A delayed task, queue controls and a periodic schedule.
    delayed = greet("later")
    delayed.options.delay.CopyFrom(duration(1))
    done = await wait_terminal(stub, (await stub.SubmitTask(delayed)).task.id)
    assert done.state == S.TASK_STATE_COMPLETED
    queues = queues_pb2_grpc.QueueServiceStub(secure_system.channel)
    await queues.PauseQueue(Q.PauseQueueRequest(type="greet"))
    await queues.SetQueueLimits(
        Q.SetQueueLimitsRequest(type="greet", limits=Q.QueueLimits(max_concurrency=2))
    )
    await queues.ResumeQueue(Q.ResumeQueueRequest(type="greet"))
    await queues.ListQueues(Q.ListQueuesRequest())
    schedules = schedules_pb2_grpc.ScheduleServiceStub(secure_system.channel)
    await schedules.CreateSchedule(
        P.CreateScheduleRequest(
            schedule_id="tick", spec=P.ScheduleSpec(interval=duration(1), task=greet("tick"))
        )
    )
    async with asyncio.timeout(30):
        while True:
            listed = await stub.ListTasks(S.ListTasksRequest(labels={"schedule": "tick"}))
            if any(t.state == S.TASK_STATE_COMPLETED for t in listed.tasks):
                break
            await asyncio.sleep(0.1)
    await schedules.DeleteSchedule(P.DeleteScheduleRequest(schedule_id="tick"))

    # Deleting and purging (payloads too), the background rounds of store and scheduler,
    # and reconciliation failing a task no stream holds (published as the gateway would
    # before dying between its two publishes).
    await stub.DeleteTask(S.DeleteTaskRequest(task_id=big_task))
    await stub.PurgeTasks(S.PurgeTasksRequest(older_than=duration(0)))
    store, scheduler = secure_system.store, secure_system.scheduler
    assert store is not None and scheduler is not None
    await store.trimmer.trim_once()
    await store.lag_probe.poll()
    await scheduler.queue_probe.poll()
    orphan = orphan_event()
    publisher = messages.publisher(
        scheduler.nc.jetstream(), gateway_nc := await connect_as(secure_nats, subjects.GATEWAY)
    )
    await publisher.publish(
        subjects.event_subject(subjects.GATEWAY, orphan.type),
        orphan.SerializeToString(),
        messages.headers(f"{orphan.task_id}:submitted"),
    )
    await jetstream.close(gateway_nc)
    # The reconciler reads every namespace from the store, as the scheduler does.
    assert secure_system.store is not None
    async with grpc.aio.insecure_channel(secure_system.store.address) as store_channel:
        reconciler = Reconciler(
            scheduler.nc.jetstream(), tasks_pb2_grpc.TaskServiceStub(store_channel), quiet_for=0
        )
        assert await reconciler.reconcile_once() >= 1
    lost = await wait_terminal(stub, orphan.task_id)
    assert lost.state == S.TASK_STATE_FAILED and lost.error.type == "lost"

    assert violations(secure_nats) == []
