"""The NATS probes of issue 19, each now refused: by the server's authorization (no
credentials, a worker's credentials used for what only another role may do) or, for what
a role may still publish, by the store's screen of every event (store.screen)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nats
import pytest
from google.protobuf import struct_pb2
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from conveyor import jetstream, messages, subjects
from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.ids import new_task_id
from conveyor.tasks import duration, timestamp
from tests.conftest import NatsServer, System, role_settings
from tests.security.conftest import violations
from tests.support import custom_handlers
from tests.support.helpers import wait_terminal

REFUSED = (nats.errors.TimeoutError, TimeoutError)
"""What a JetStream request whose publish the server refused ends with: no answer."""


async def connect_as(server: NatsServer, role: str) -> NATS:
    return await jetstream.connect(role_settings(server, role), f"probe-{role}", role=role)


@pytest.fixture
async def worker_nc(secure_nats: NatsServer) -> AsyncIterator[NATS]:
    """A connection with a worker's credentials: what a compromised worker holds."""
    nc = await connect_as(secure_nats, subjects.WORKER)
    yield nc
    await jetstream.close(nc)


@pytest.fixture
async def running(secure_system: System) -> System:
    await secure_system.start_store()
    # A short grace: the forged-outcome test leaves a sleeper running in it.
    await secure_system.start_worker(custom_handlers.registry(), shutdown_grace_seconds=0.5)
    await secure_system.start_gateway()
    return secure_system


def submitted_event(task_id: str, **task_fields: object) -> events_pb2.TaskEvent:
    fields: dict[str, object] = {"max_attempts": 3, **task_fields}
    task = S.Task(
        id=task_id,
        type="text_processing",
        state=S.TASK_STATE_PENDING,
        create_time=timestamp(),
        version=1,
        **fields,  # type: ignore[arg-type]
    )
    task_input = S.TaskInput(text_processing=S.TextProcessingInput(text="forged"))
    return events_pb2.TaskEvent(
        task_id=task_id,
        type=task.type,
        time=timestamp(),
        submitted=events_pb2.Submitted(task=task, input=task_input),
    )


def refused(system: System, reason: str) -> float:
    assert system.store is not None
    value = system.store.metrics.registry.get_sample_value(
        "conveyor_store_refused_events_total", {"reason": reason}
    )
    return value or 0.0


async def publish(nc: NATS, publisher: str, event: events_pb2.TaskEvent) -> None:
    """Publishes ``event`` on ``publisher``'s subject and waits for the stream's ack."""
    subject = subjects.event_subject(publisher, event.type)
    await nc.jetstream().publish(subject, event.SerializeToString(), timeout=2)


async def applied(system: System) -> None:
    """Returns once the store applied everything published so far (ListTasks reads its
    writes)."""
    await system.stub.ListTasks(S.ListTasksRequest(page_size=1))


async def test_a_client_without_credentials_or_with_a_wrong_password_cannot_connect(
    secure_nats: NatsServer,
) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(secure_nats.url, allow_reconnect=False, connect_timeout=2)
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(
            secure_nats.url,
            user=subjects.STORE,
            password="guessed",
            allow_reconnect=False,
            connect_timeout=2,
        )


async def test_worker_credentials_cannot_publish_a_submitted_event_or_a_task(
    running: System, worker_nc: NATS, secure_nats: NatsServer
) -> None:
    js = worker_nc.jetstream()
    forged = submitted_event(new_task_id())
    for publisher in (subjects.GATEWAY, subjects.SCHEDULER):
        with pytest.raises(REFUSED):
            await publish(worker_nc, publisher, forged)
    # 3 MiB straight into TASKS, which a worker would run.
    big = events_pb2.TaskMessage(task_id=forged.task_id, type="text_processing")
    big.input.text_processing.text = "x" * (3 * 1024 * 1024)
    subject = subjects.task_subject("text_processing", 0, forged.task_id)
    with pytest.raises(REFUSED):
        await js.publish(subject, big.SerializeToString(), timeout=2)
    await applied(running)
    with pytest.raises(Exception, match=r"NOT_FOUND|not found"):
        await running.stub.GetTask(S.GetTaskRequest(task_id=forged.task_id))
    refusals = [line for line in violations(secure_nats) if "user:worker" in line]
    for denied in (subject, "conveyor.events.gateway.text_processing"):
        assert any(f'Publish Violation - Subject "{denied}"' in line for line in refusals)


async def test_worker_credentials_cannot_write_the_types_bucket_and_the_store_checks_registrations(
    running: System, worker_nc: NATS
) -> None:
    kv = await worker_nc.jetstream().key_value(subjects.KV_TYPES)
    spec = events_pb2.TaskTypeSpec(type="planted", max_attempts=3, timeout=duration(10))
    with pytest.raises(REFUSED):
        await kv.put("planted", spec.SerializeToString())
    # Through the store, which writes the bucket, a spec no worker makes is refused...
    from worker.registration import RegistrationRefused, register_once

    with pytest.raises(RegistrationRefused, match="max_attempts"):
        await register_once(worker_nc, events_pb2.TaskTypeSpec(type="planted", max_attempts=10**6))
    with pytest.raises(RegistrationRefused, match="must match"):
        await register_once(worker_nc, events_pb2.TaskTypeSpec(type="../x", max_attempts=1))
    with pytest.raises(nats.js.errors.KeyNotFoundError):
        await kv.get("planted")
    # ...and a worker's own registration is written.
    await register_once(worker_nc, spec)
    stored = events_pb2.TaskTypeSpec.FromString((await kv.get("planted")).value or b"")
    assert (stored.type, stored.max_attempts) == ("planted", 3)


async def test_only_the_store_can_signal_a_cancel(secure_nats: NatsServer, worker_nc: NATS) -> None:
    heard: list[str] = []

    async def hear(msg: Msg) -> None:
        heard.append(msg.data.decode())

    listener = await connect_as(secure_nats, subjects.WORKER)
    store = await connect_as(secure_nats, subjects.STORE)
    try:
        await listener.subscribe(subjects.CANCEL_SUBJECT, cb=hear)
        await listener.flush()
        await worker_nc.publish(subjects.CANCEL_SUBJECT, b"from-a-worker")
        await worker_nc.flush()
        await store.publish(subjects.CANCEL_SUBJECT, b"from-the-store")
        await store.flush()
        async with asyncio.timeout(5):
            while not heard:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        assert heard == ["from-the-store"]
        assert any("conveyor.control.cancel" in line for line in violations(secure_nats))
    finally:
        await jetstream.close(listener)
        await jetstream.close(store)


async def test_only_the_store_reads_events(running: System, secure_nats: NatsServer) -> None:
    task = (
        await running.stub.SubmitTask(
            S.SubmitTaskRequest(text_processing=S.TextProcessingInput(text="a secret payload"))
        )
    ).task
    for role in (subjects.WORKER, subjects.GATEWAY, subjects.SCHEDULER):
        nc = await connect_as(secure_nats, role)
        try:
            heard: list[bytes] = []

            async def hear(msg: Msg, heard: list[bytes] = heard) -> None:
                heard.append(msg.data)

            await nc.subscribe(f"{subjects.EVENTS_PREFIX}.>", cb=hear)
            js = nc.jetstream(timeout=2)
            with pytest.raises(REFUSED):
                await js.get_msg(subjects.STREAM_EVENTS, 1)
            with pytest.raises(REFUSED):
                await js.pull_subscribe(f"{subjects.EVENTS_PREFIX}.>", stream="EVENTS")
            await wait_terminal(running.stub, task.id)  # its events go by meanwhile
            assert heard == [], role
        finally:
            await jetstream.close(nc)
    assert any("Subscription Violation" in line for line in violations(secure_nats))


async def test_the_store_refuses_what_a_gateway_could_not_have_accepted(
    running: System, secure_nats: NatsServer
) -> None:
    """What a compromised gateway publishes on its own subject is still held to the
    gateway's rules: ids it issues, at most 32 labels, its options."""
    gateway = await connect_as(secure_nats, subjects.GATEWAY)
    try:
        await publish(gateway, subjects.GATEWAY, submitted_event("../../etc/passwd"))
        many = {f"k{i}": "v" for i in range(5000)}
        labelled = submitted_event(new_task_id(), labels=many)
        await publish(gateway, subjects.GATEWAY, labelled)
        await publish(gateway, subjects.GATEWAY, submitted_event(new_task_id(), max_attempts=10**6))
        cancel = messages.event(new_task_id(), "text_processing", cancel_requested={})
        await publish(gateway, subjects.GATEWAY, cancel)  # the store's kind
        await applied(running)
    finally:
        await jetstream.close(gateway)
    listed = await running.stub.ListTasks(S.ListTasksRequest(page_size=100))
    assert [t.id for t in listed.tasks] == []
    assert refused(running, "task_id") == 1
    assert refused(running, "labels") == 1
    assert refused(running, "options") == 1
    assert refused(running, "publisher") == 1


async def test_a_forged_outcome_from_worker_credentials_is_refused_when_impossible(
    running: System, worker_nc: NATS
) -> None:
    """A worker may report outcomes, so a compromised one still can for a task that
    runs; what no worker would send is refused, and finished tasks stay finished."""
    stub = running.stub
    payload = struct_pb2.Struct()
    payload.update({"name": "victim"})
    victim = (
        await stub.SubmitTask(
            S.SubmitTaskRequest(custom=S.CustomTaskInput(type="greet", payload=payload))
        )
    ).task
    done = await wait_terminal(stub, victim.id)
    assert done.state == S.TASK_STATE_COMPLETED
    sleeper = (
        await stub.SubmitTask(S.SubmitTaskRequest(custom=S.CustomTaskInput(type="sleeper")))
    ).task
    result = S.TaskResult(custom=S.CustomTaskResult(json='{"forged":true}'))

    def forged(
        task_id: str, task_type: str, outcome: events_pb2.Completed, attempt: int = 1
    ) -> events_pb2.TaskEvent:
        return messages.event(
            task_id, task_type, attempt=attempt, worker_id="w-evil", completed=outcome
        )

    completed = events_pb2.Completed(result=result)
    await publish(worker_nc, subjects.WORKER, forged("../../etc/passwd", "greet", completed))
    await publish(
        worker_nc, subjects.WORKER, forged(sleeper.id, "greet", completed)
    )  # its type is sleeper
    await publish(
        worker_nc, subjects.WORKER, forged(sleeper.id, "sleeper", completed, attempt=99)
    )  # attempt past its budget
    huge = S.TaskResult(custom=S.CustomTaskResult(json='{"x":"' + "y" * 2 * 1024 * 1024 + '"}'))
    await publish(
        worker_nc,
        subjects.WORKER,
        forged(sleeper.id, "sleeper", events_pb2.Completed(result=huge)),
    )
    await publish(
        worker_nc, subjects.WORKER, forged(done.id, "greet", completed)
    )  # finished: ignored
    submitted = submitted_event(new_task_id())
    await publish(worker_nc, subjects.WORKER, submitted)  # a gateway's kind
    await applied(running)
    assert refused(running, "task_id") == 1
    assert refused(running, "type") == 1
    assert refused(running, "attempt") == 1
    assert refused(running, "size") == 1
    assert refused(running, "publisher") == 1
    after = (await stub.GetTask(S.GetTaskRequest(task_id=done.id))).task
    assert after.version == done.version and "forged" not in after.result.custom.json
    current = (await stub.GetTask(S.GetTaskRequest(task_id=sleeper.id))).task
    assert current.state != S.TASK_STATE_COMPLETED
    # What a worker's credentials can still do: report an outcome for a task that runs.
    await publish(worker_nc, subjects.WORKER, forged(sleeper.id, "sleeper", completed))
    finished = await wait_terminal(stub, sleeper.id)
    assert finished.state == S.TASK_STATE_COMPLETED
