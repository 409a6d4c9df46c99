"""The HTTP door against real servers: every annotated method answers over HTTP/JSON what
it answers over gRPC, and the quick-start's curl commands work as written."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import Awaitable, Callable

import grpc
import httpx
import pytest

from conveyor import transcode
from conveyor.api.queues.v1 import queues_pb2 as Q
from conveyor.api.queues.v1 import queues_pb2_grpc
from conveyor.api.schedules.v1 import schedules_pb2 as P
from conveyor.api.schedules.v1 import schedules_pb2_grpc
from conveyor.api.tasks.v1 import tasks_pb2 as S
from gateway.http import HTTP_STATUS
from tests.conftest import NatsServer, System
from tests.support.helpers import wait_terminal
from tests.support.http import grpc_status, http_status, parsed, start_with_http

pytestmark = [pytest.mark.integration]

SERVICES = [
    S.DESCRIPTOR.services_by_name["TaskService"],
    P.DESCRIPTOR.services_by_name["ScheduleService"],
    Q.DESCRIPTOR.services_by_name["QueueService"],
]
MISSING = "0" * 26
Case = Callable[[System, httpx.AsyncClient], Awaitable[None]]


async def same_error(
    http: Awaitable[httpx.Response], call: Awaitable[object], code: grpc.StatusCode
) -> None:
    """Both sides fail with ``code`` and the same google.rpc.Status."""
    response = await http
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call
    assert failed.value.code() == code
    assert http_status(response) == grpc_status(failed.value)
    assert response.status_code == HTTP_STATUS[code]  # the standard mapping (gateway.http)


async def done_task(system: System, http: httpx.AsyncClient, text: str) -> S.Task:
    body = {"textProcessing": {"text": text}}
    task = parsed(await http.post("/v1/tasks", json=body), S.SubmitTaskResponse).task
    return await wait_terminal(system.stub, task.id)


async def submit_task(system: System, http: httpx.AsyncClient) -> None:
    body = {"textProcessing": {"text": "one"}, "options": {"idempotencyKey": "same-1"}}
    first = parsed(await http.post("/v1/tasks", json=body), S.SubmitTaskResponse)
    assert not first.deduplicated
    await wait_terminal(system.stub, first.task.id)
    # Repeats answer the same task as it is now, the same both ways.
    over_http = parsed(await http.post("/v1/tasks", json=body), S.SubmitTaskResponse)
    request = S.SubmitTaskRequest(
        text_processing=S.TextProcessingInput(text="one"),
        options=S.TaskOptions(idempotency_key="same-1"),
    )
    over_grpc = await system.stub.SubmitTask(request)
    assert over_grpc.deduplicated and over_http == over_grpc


async def submit_tasks(system: System, http: httpx.AsyncClient) -> None:
    body = {
        "requests": [
            {"textProcessing": {"text": f"t{i}"}, "options": {"idempotencyKey": f"batch-{i}"}}
            for i in range(3)
        ]
    }
    first = parsed(await http.post("/v1/tasks:batch", json=body), S.SubmitTasksResponse)
    for task in first.tasks:
        await wait_terminal(system.stub, task.id)
    over_http = parsed(await http.post("/v1/tasks:batch", json=body), S.SubmitTasksResponse)
    request = S.SubmitTasksRequest(
        requests=[
            S.SubmitTaskRequest(
                text_processing=S.TextProcessingInput(text=f"t{i}"),
                options=S.TaskOptions(idempotency_key=f"batch-{i}"),
            )
            for i in range(3)
        ]
    )
    assert over_http == await system.stub.SubmitTasks(request)


async def get_task(system: System, http: httpx.AsyncClient) -> None:
    task = await done_task(system, http, "get me")
    over_http = parsed(await http.get(f"/v1/tasks/{task.id}"), S.GetTaskResponse)
    assert over_http == await system.stub.GetTask(S.GetTaskRequest(task_id=task.id))
    assert over_http.task.state == S.TASK_STATE_COMPLETED
    await same_error(
        http.get(f"/v1/tasks/{MISSING}"),
        system.stub.GetTask(S.GetTaskRequest(task_id=MISSING)),
        grpc.StatusCode.NOT_FOUND,
    )


async def list_tasks(system: System, http: httpx.AsyncClient) -> None:
    await done_task(system, http, "listed")
    query = "states=TASK_STATE_COMPLETED&type=text_processing&pageSize=2"
    over_http = parsed(await http.get(f"/v1/tasks?{query}"), S.ListTasksResponse)
    request = S.ListTasksRequest(
        states=[S.TASK_STATE_COMPLETED], type="text_processing", page_size=2
    )
    assert over_http == await system.stub.ListTasks(request)
    assert over_http.tasks


async def cancel_task(system: System, http: httpx.AsyncClient) -> None:
    await same_error(
        http.post(f"/v1/tasks/{MISSING}:cancel"),
        system.stub.CancelTask(S.CancelTaskRequest(task_id=MISSING)),
        grpc.StatusCode.NOT_FOUND,
    )


async def retry_task(system: System, http: httpx.AsyncClient) -> None:
    task = await done_task(system, http, "already done")
    response = http.post(f"/v1/tasks/{task.id}:retry", json={})
    await same_error(
        response,
        system.stub.RetryTask(S.RetryTaskRequest(task_id=task.id)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert (await http.post(f"/v1/tasks/{task.id}:retry")).status_code == 412


async def delete_task(system: System, http: httpx.AsyncClient) -> None:
    first = await done_task(system, http, "delete over http")
    second = await done_task(system, http, "delete over grpc")
    over_http = parsed(await http.delete(f"/v1/tasks/{first.id}"), S.DeleteTaskResponse)
    assert over_http == await system.stub.DeleteTask(S.DeleteTaskRequest(task_id=second.id))
    assert (await http.get(f"/v1/tasks/{first.id}")).status_code == 404


async def get_task_stats(system: System, http: httpx.AsyncClient) -> None:
    await done_task(system, http, "counted")
    query = "window=3600s&type=text_processing&topErrors=3"
    over_http = parsed(await http.get(f"/v1/tasks:stats?{query}"), S.GetTaskStatsResponse)
    request = S.GetTaskStatsRequest(type="text_processing", top_errors=3)
    request.window.FromSeconds(3600)
    over_grpc = await system.stub.GetTaskStats(request)
    over_http.ClearField("since")  # now minus the window, a moment apart
    over_grpc.ClearField("since")
    assert over_http == over_grpc


async def purge_tasks(system: System, http: httpx.AsyncClient) -> None:
    body = {"states": ["TASK_STATE_CANCELLED"], "type": "text_processing"}
    over_http = parsed(await http.post("/v1/tasks:purge", json=body), S.PurgeTasksResponse)
    request = S.PurgeTasksRequest(states=[S.TASK_STATE_CANCELLED], type="text_processing")
    assert over_http == await system.stub.PurgeTasks(request)


def schedules(system: System) -> schedules_pb2_grpc.ScheduleServiceStub:
    assert system.channel is not None
    return schedules_pb2_grpc.ScheduleServiceStub(system.channel)


SPEC = {"interval": "3600s", "task": {"textProcessing": {"text": "tick"}}}


async def create_schedule(system: System, http: httpx.AsyncClient) -> None:
    body = {"scheduleId": "created", "spec": SPEC}
    over_http = parsed(await http.post("/v1/schedules", json=body), P.CreateScheduleResponse)
    read = await schedules(system).GetSchedule(P.GetScheduleRequest(schedule_id="created"))
    assert over_http.schedule == read.schedule
    again = P.CreateScheduleRequest(schedule_id="created", spec=read.schedule.spec)
    await same_error(
        http.post("/v1/schedules", json=body),
        schedules(system).CreateSchedule(again),
        grpc.StatusCode.ALREADY_EXISTS,
    )


async def schedule_named(http: httpx.AsyncClient, name: str) -> None:
    body = {"scheduleId": name, "spec": SPEC}
    assert (await http.post("/v1/schedules", json=body)).status_code == 200


async def get_schedule(system: System, http: httpx.AsyncClient) -> None:
    await schedule_named(http, "read")
    over_http = parsed(await http.get("/v1/schedules/read"), P.GetScheduleResponse)
    request = P.GetScheduleRequest(schedule_id="read")
    assert over_http == await schedules(system).GetSchedule(request)


async def list_schedules(system: System, http: httpx.AsyncClient) -> None:
    await schedule_named(http, "listed")
    over_http = parsed(await http.get("/v1/schedules"), P.ListSchedulesResponse)
    assert over_http == await schedules(system).ListSchedules(P.ListSchedulesRequest())
    assert over_http.schedules


async def pause_schedule(system: System, http: httpx.AsyncClient) -> None:
    await schedule_named(http, "paused")
    over_http = parsed(await http.post("/v1/schedules/paused:pause"), P.PauseScheduleResponse)
    request = P.PauseScheduleRequest(schedule_id="paused")
    assert over_http == await schedules(system).PauseSchedule(request)
    assert over_http.schedule.paused


async def resume_schedule(system: System, http: httpx.AsyncClient) -> None:
    await schedule_named(http, "resumed")
    over_http = parsed(await http.post("/v1/schedules/resumed:resume"), P.ResumeScheduleResponse)
    request = P.ResumeScheduleRequest(schedule_id="resumed")
    assert over_http == await schedules(system).ResumeSchedule(request)


async def delete_schedule(system: System, http: httpx.AsyncClient) -> None:
    await schedule_named(http, "gone-1")
    await schedule_named(http, "gone-2")
    over_http = parsed(await http.delete("/v1/schedules/gone-1"), P.DeleteScheduleResponse)
    request = P.DeleteScheduleRequest(schedule_id="gone-2")
    assert over_http == await schedules(system).DeleteSchedule(request)
    assert (await http.get("/v1/schedules/gone-1")).status_code == 404


async def trigger_schedule(system: System, http: httpx.AsyncClient) -> None:
    await same_error(
        http.post("/v1/schedules/nowhere:trigger"),
        schedules(system).TriggerSchedule(P.TriggerScheduleRequest(schedule_id="nowhere")),
        grpc.StatusCode.NOT_FOUND,
    )
    await schedule_named(http, "triggered")
    response = await http.post("/v1/schedules/triggered:trigger")
    task = parsed(response, P.TriggerScheduleResponse).task
    assert (await wait_terminal(system.stub, task.id)).state == S.TASK_STATE_COMPLETED


def queues(system: System) -> queues_pb2_grpc.QueueServiceStub:
    assert system.channel is not None
    return queues_pb2_grpc.QueueServiceStub(system.channel)


async def list_queues(system: System, http: httpx.AsyncClient) -> None:
    over_http = parsed(await http.get("/v1/queues"), Q.ListQueuesResponse)
    assert over_http == await queues(system).ListQueues(Q.ListQueuesRequest())
    assert {q.type for q in over_http.queues} >= {"text_processing"}


async def pause_queue(system: System, http: httpx.AsyncClient) -> None:
    over_http = parsed(await http.post("/v1/queues/image_processing:pause"), Q.PauseQueueResponse)
    request = Q.PauseQueueRequest(type="image_processing")
    assert over_http == await queues(system).PauseQueue(request)
    assert over_http.queue.paused


async def resume_queue(system: System, http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/queues/image_processing:resume")
    over_http = parsed(response, Q.ResumeQueueResponse)
    request = Q.ResumeQueueRequest(type="image_processing")
    assert over_http == await queues(system).ResumeQueue(request)
    assert not over_http.queue.paused


async def set_queue_limits(system: System, http: httpx.AsyncClient) -> None:
    body = {"limits": {"maxConcurrency": 4}}
    response = await http.post("/v1/queues/image_processing:setLimits", json=body)
    over_http = parsed(response, Q.SetQueueLimitsResponse)
    request = Q.SetQueueLimitsRequest(
        type="image_processing", limits=Q.QueueLimits(max_concurrency=4)
    )
    assert over_http == await queues(system).SetQueueLimits(request)
    await same_error(
        http.post("/v1/queues/no_such_type:pause"),
        queues(system).PauseQueue(Q.PauseQueueRequest(type="no_such_type")),
        grpc.StatusCode.NOT_FOUND,
    )


CASES: dict[str, Case] = {
    "SubmitTask": submit_task,
    "SubmitTasks": submit_tasks,
    "GetTask": get_task,
    "ListTasks": list_tasks,
    "CancelTask": cancel_task,
    "RetryTask": retry_task,
    "DeleteTask": delete_task,
    "GetTaskStats": get_task_stats,
    "PurgeTasks": purge_tasks,
    "CreateSchedule": create_schedule,
    "GetSchedule": get_schedule,
    "ListSchedules": list_schedules,
    "PauseSchedule": pause_schedule,
    "ResumeSchedule": resume_schedule,
    "DeleteSchedule": delete_schedule,
    "TriggerSchedule": trigger_schedule,
    "ListQueues": list_queues,
    "PauseQueue": pause_queue,
    "ResumeQueue": resume_queue,
    "SetQueueLimits": set_queue_limits,
}


def test_every_annotated_unary_method_has_a_parity_case() -> None:
    annotated = {r.method.name for r in transcode.routes(SERVICES) if not r.method.server_streaming}
    assert annotated == set(CASES)


async def test_every_annotated_method_answers_http_as_grpc(system: System) -> None:
    async with await start_with_http(system) as http:
        for name, case in CASES.items():
            try:
                await case(system, http)
            except AssertionError as exc:
                raise AssertionError(f"{name}: {exc}") from exc


async def test_the_quick_start_commands_work_as_written(system: System) -> None:
    async with await start_with_http(system) as http:
        body = {"task_type": "text_processing", "payload": {"text": "This is a sample text."}}
        submitted = await http.post("/tasks/", json=body)
        task = parsed(submitted, S.SubmitTaskResponse).task
        assert task.type == "text_processing" and task.state == S.TASK_STATE_PENDING
        await wait_terminal(system.stub, task.id)
        answer = (await http.get(f"/tasks/{task.id}")).json()["task"]
        assert answer["id"] == task.id and answer["state"] == "TASK_STATE_COMPLETED"
        assert answer["result"]["textProcessing"]
        listed = parsed(await http.get("/tasks/"), S.ListTasksResponse)
        assert task.id in [t.id for t in listed.tasks]


async def test_health_and_readiness(system: System) -> None:
    async with await start_with_http(system) as http:
        assert (await http.get("/healthz")).json() == {"status": "SERVING"}
        assert (await http.get("/readyz")).status_code == 200


async def test_readiness_follows_nats_and_a_store_gone_is_503(
    system: System, nats_server: NatsServer
) -> None:
    async with await start_with_http(system) as http:
        nats_server.stop()
        async with asyncio.timeout(60):
            while (await http.get("/readyz")).status_code != 503:
                await asyncio.sleep(0.05)
        assert (await http.get("/readyz")).json() == {"status": "NOT_SERVING"}
        assert (await http.get("/healthz")).status_code == 200  # alive all the same
        nats_server.start()
        async with asyncio.timeout(60):
            while (await http.get("/readyz")).status_code != 200:
                await asyncio.sleep(0.1)
        assert system.store is not None
        await system.store.stop(0.5)
        system.store = None
        gone = await http.get(f"/v1/tasks/{MISSING}")
        assert gone.status_code == 503 and http_status(gone).code == 14
        assert "store unavailable" in http_status(gone).message


async def test_cors_allows_the_configured_origins_only(system: System) -> None:
    async with await start_with_http(system, http_cors_origins=("http://ui.test",)) as http:
        preflight = {"origin": "http://ui.test", "access-control-request-method": "POST"}
        allowed = await http.options("/v1/tasks", headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "http://ui.test"
        other = {**preflight, "origin": "http://evil.test"}
        assert (
            "access-control-allow-origin"
            not in (await http.options("/v1/tasks", headers=other)).headers
        )
        listed = await http.get("/v1/tasks", headers={"origin": "http://ui.test"})
        assert listed.headers["access-control-allow-origin"] == "http://ui.test"
        # Event streams, served beside Starlette's middleware, answer CORS the same way.
        origin = {"origin": "http://ui.test"}
        missing = await http.get(f"/v1/tasks/{'0' * 26}:watch", headers=origin)
        assert missing.status_code == 404
        assert missing.headers["access-control-allow-origin"] == "http://ui.test"
        later = {"textProcessing": {"text": "cors"}, "options": {"delay": "3600s"}}
        task_id = (await http.post("/v1/tasks", json=later)).json()["task"]["id"]
        async with http.stream("GET", f"/v1/tasks/{task_id}:watch", headers=origin) as stream:
            assert stream.status_code == 200
            assert stream.headers["access-control-allow-origin"] == "http://ui.test"
        async with http.stream(
            "GET", f"/v1/tasks/{task_id}:watch", headers={"origin": "http://evil.test"}
        ) as stream:
            assert stream.status_code == 200
            assert "access-control-allow-origin" not in stream.headers


async def test_the_openapi_document_and_its_docs_are_served(system: System) -> None:
    async with await start_with_http(system) as http:
        document = (await http.get("/openapi.json")).json()
        assert document["openapi"].startswith("3.")
        assert "post" in document["paths"]["/v1/tasks"]
        docs = await http.get("/docs")
        assert docs.headers["content-type"].startswith("text/html")
        assert "/openapi.json" in docs.text
        # Every file the page loads is served by the gateway itself: no CDN at run time.
        assets = re.findall(r'(?:href|src)="([^"]+)"', docs.text)
        assert assets and all(a.startswith("/docs/static/") for a in assets)
        for asset in assets:
            served = await http.get(asset)
            assert served.status_code == 200 and len(served.content) > 10_000, asset


async def test_the_console_is_served_at_the_root_with_its_own_files_only(system: System) -> None:
    async with await start_with_http(system) as http:
        page = await http.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        # Everything it loads comes from the gateway (no CDN), the import map's modules too.
        assets = re.findall(r'(?:href|src)="(/[^"]+)"', page.text)
        assets += re.findall(r'"(/console/vendor/[^"]+)"', page.text)
        assert "/console/app.js" in assets and "/console/vendor/preact.module.js" in assets
        for asset in assets:
            served = await http.get(asset)
            assert served.status_code == 200 and served.content, asset
        assert (await http.get("/console/vendor/LICENSE-preact")).status_code == 200
        # The policy lets the page run its own files and its one inline script, nothing else.
        policy = page.headers["content-security-policy"]
        inline = re.search(r'<script type="importmap">(.*?)</script>', page.text, re.S)
        assert inline is not None
        digest = base64.b64encode(hashlib.sha256(inline[1].encode()).digest()).decode()
        assert f"script-src 'self' 'sha256-{digest}'" in policy
        assert "unsafe-inline" not in policy
        me = await http.get("/v1/whoami")
        assert me.json() == {"subject": "local", "role": "ROLE_ADMIN", "namespace": "default"}
