"""Bad input at the HTTP door: each gets a clear 4xx google.rpc.Status naming the problem,
and nothing reaches a worker's queue. Then Hypothesis fuzzes the JSON body, as
test_fuzz does the gRPC request."""

from __future__ import annotations

import asyncio
import collections
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import nats
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from conveyor import subjects
from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2 as S
from tests.conftest import System
from tests.support.helpers import wait_terminal
from tests.support.http import http_status, parsed, start_with_http

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(600),
    pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies"),
]

LIMIT = 4096


class Tap:
    """Every message published to a worker queue (task and delayed subjects)."""

    def __init__(self) -> None:
        self.task_ids: list[str] = []

    async def record(self, msg: Msg) -> None:
        self.task_ids.append(events_pb2.TaskMessage.FromString(msg.data).task_id)


async def tap(system: System) -> tuple[NATS, Tap]:
    taps = Tap()
    nc = await nats.connect(system.common.nats_url)
    for prefix in (subjects.TASKS_PREFIX, subjects.DELAYED_PREFIX):
        await nc.subscribe(f"{prefix}.>", cb=taps.record)
    await nc.flush()
    return nc, taps


def fields(status: status_pb2.Status) -> dict[str, str]:
    """The BadRequest field violations of a status, field -> description."""
    found: dict[str, str] = {}
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            found.update({v.field: v.description for v in bad.field_violations})
    return found


def refused(response: httpx.Response, http: int, code: int) -> status_pb2.Status:
    assert response.status_code == http, response.text
    status = http_status(response)
    assert status.code == code and status.message, status
    return status


async def test_bad_requests_get_a_clear_error_and_queue_nothing(system: System) -> None:
    async with await start_with_http(system, http_max_body_bytes=LIMIT) as http:
        nc, taps = await tap(system)
        try:
            await each_bad_request(http)
            await nc.flush()
        finally:
            await nc.close()
        assert taps.task_ids == []


async def each_bad_request(http: httpx.AsyncClient) -> None:
    json_header = {"content-type": "application/json"}
    status = refused(await http.post("/v1/tasks", content=b"{nope", headers=json_header), 400, 3)
    assert "not valid JSON" in fields(status)["body"]
    status = refused(await http.post("/v1/tasks", content=b"[1, 2]", headers=json_header), 400, 3)
    assert "JSON object" in fields(status)["body"]
    text = {"content-type": "text/plain"}
    status = refused(await http.post("/v1/tasks", content=b'{"a": 1}', headers=text), 415, 3)
    assert "application/json" in status.message
    big = b'{"textProcessing": {"text": "' + b"a" * LIMIT + b'"}}'
    assert "larger than" in refused(await http.post("/v1/tasks", content=big), 413, 8).message

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        for _ in range(8):
            yield b" " * 1024

    refused(await http.post("/v1/tasks", content=chunks(), headers=json_header), 413, 8)
    assert "no route" in refused(await http.get("/v2/nothing"), 404, 5).message
    wrong_verb = await http.put("/v1/tasks")
    refused(wrong_verb, 405, 12)
    assert wrong_verb.headers["allow"] == "GET, POST"
    status = refused(await http.get("/v1/tasks?pageSize=many"), 400, 3)
    assert "pageSize" in fields(status)
    status = refused(await http.get("/v1/tasks?states=TASK_STATE_NOPE"), 400, 3)
    assert "TASK_STATE_NOPE" in fields(status)["states"]
    # A malformed time is named, whichever of the creation bounds it is.
    status = refused(await http.get("/v1/tasks?createdAfter=2026-13-01T00:00:00Z"), 400, 3)
    assert "createdAfter" in fields(status)
    status = refused(await http.get("/v1/tasks?createdBefore=yesterday"), 400, 3)
    assert "createdBefore" in fields(status)
    backwards = "createdAfter=2026-12-05T10:00:00Z&createdBefore=2026-12-05T09:00:00Z"
    status = refused(await http.get(f"/v1/tasks?{backwards}"), 400, 3)
    assert "later than" in fields(status)["created_before"]
    status = refused(await http.get(f"/v1/tasks/{'0' * 26}?view=TASK_VIEW_NOPE"), 400, 3)
    assert "TASK_VIEW_NOPE" in fields(status)["view"]
    status = refused(await http.get(f"/v1/tasks/{'0' * 26}?view=9"), 400, 3)
    assert "unknown value 9" in fields(status)["view"]
    status = refused(await http.get("/v1/tasks:stats?bucket=0.5s"), 400, 3)
    assert "at least" in fields(status)["bucket"]
    status = refused(await http.get("/v1/tasks:stats?window=86400s&bucket=1s"), 400, 3)
    assert "1440" in fields(status)["bucket"]
    assert "colour" in fields(refused(await http.get("/v1/tasks?colour=red"), 400, 3))
    status = refused(await http.post("/v1/tasks", json={"textProcessing": {"txt": "a"}}), 400, 3)
    assert "txt" in fields(status)["body"]
    # The service's own validation, with the same field violations as over gRPC.
    status = refused(await http.post("/v1/tasks", json={"textProcessing": {"text": ""}}), 400, 3)
    assert "text_processing.text" in fields(status)
    status = refused(await http.post("/tasks/", json={"task_type": 7, "payload": {}}), 400, 3)
    assert "task_type" in fields(status)
    status = refused(await http.post("/tasks/", json={"task_type": "nope", "payload": {}}), 400, 3)
    assert fields(status)


async def test_an_empty_body_is_an_empty_request(system: System) -> None:
    async with await start_with_http(system) as http:
        # curl -X POST without -d sends no body and no content type: the request is {}.
        status = refused(await http.post("/v1/tasks"), 400, 3)
        assert fields(status)


# --- fuzz ------------------------------------------------------------------------------

FIELD_NAMES = [
    "textProcessing", "text_processing", "aiSummarization", "batchProcessing",
    "imageProcessing", "custom", "options", "text", "items", "image", "operation",
    "transforms", "maxAttempts", "timeout", "priority", "idempotencyKey", "labels",
    "runAt", "delay", "type", "payload", "task_type", "maxLength",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["TEXT_TRANSFORM_UPPER", "TASK_PRIORITY_HIGH", "3s", "1e400", "aGk="]),
)
KEYS = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=12))
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=20,
)
BODIES = st.one_of(
    st.dictionaries(KEYS, JSON, max_size=5),
    st.fixed_dictionaries(
        {"textProcessing": st.fixed_dictionaries({"text": st.text(min_size=1, max_size=50)})},
        optional={"options": st.dictionaries(st.sampled_from(FIELD_NAMES), JSON, max_size=3)},
    ),
    st.fixed_dictionaries(
        {"task_type": st.sampled_from(["text_processing", "batch_processing", "x"])},
        optional={"payload": JSON},
    ),
)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


async def test_fuzzed_json_bodies_get_ok_or_a_named_4xx(system: System) -> None:
    client = await start_with_http(system)
    await client.aclose()
    nc, taps = await tap(system)
    codes: collections.Counter[int] = collections.Counter()
    accepted: set[str] = set()

    def run(base_url: str) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as http:

            @FUZZ
            @given(body=BODIES)
            @example(body={"textProcessing": {"text": "fine"}})
            @example(body={"textProcessing": {"text": "a"}, "custom": {"type": "x"}})
            def submit(body: Any) -> None:
                for path in ("/v1/tasks", "/tasks/"):
                    response = http.post(path, json=body)
                    codes[response.status_code] += 1
                    if response.status_code == 200:
                        accepted.add(parsed(response, S.SubmitTaskResponse).task.id)
                        continue
                    assert response.status_code == 400, response.text
                    status = json_format.Parse(response.content, status_pb2.Status())
                    assert status.code == 3 and fields(status), response.text

            @FUZZ
            @given(data=st.binary(max_size=200))
            @example(data=b'{"textProcessing": {"text": NaN}, "options": {"maxAttempts": 1e999}}')
            @example(data=b'{"textProcessing": ' * 5000)
            @example(data=b"[" * 100_000 + b"]" * 100_000)
            @example(
                data=b'{"custom": {"type": "x", "payload": ' + b"[" * 3000 + b"]" * 3000 + b"}}"
            )
            def raw(data: bytes) -> None:
                response = http.post(
                    "/v1/tasks", content=data, headers={"content-type": "application/json"}
                )
                codes[response.status_code] += 1
                assert response.status_code in (200, 400), response.text

            submit()
            raw()

    assert system.gateway is not None
    try:
        await asyncio.to_thread(run, f"http://{system.gateway.http.address}")
        await nc.flush()
    finally:
        await nc.close()
    print(f"fuzzed HTTP submits: {dict(codes)}", file=sys.stderr)
    assert codes[200] > 0 and codes[400] > 0
    assert set(taps.task_ids) <= accepted
    for task_id in sorted(accepted)[:5]:
        await wait_terminal(system.stub, task_id)
