"""A custom task's arguments and result keep their integers exact, past 2**53 and up to 64
bits, through the SDK (a dict in, a dict out), a raw gRPC client and the HTTP door's
quick-start body; what no 64-bit decoder could take back is refused, naming where."""

from __future__ import annotations

import httpx
import pytest
from google.rpc import error_details_pb2

from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.client import AsyncClient, custom_result
from conveyor.errors import InvalidArgument
from conveyor.jsonlike import NotJsonLike
from tests.conftest import System
from tests.support import custom_handlers
from tests.support.custom_system import start
from tests.support.helpers import wait_terminal
from tests.support.http import http_status

pytestmark = pytest.mark.integration

EXACT = {
    "past_double": 2**53 + 1,
    "uint64_max": 2**64 - 1,
    "int64_min": -(2**63),
    "nested": [{"id": 2**60 + 7}, 1.5, None, True, "é"],
}


async def test_the_sdk_sends_and_gets_back_integers_past_2_53_exactly(system: System) -> None:
    await start(system)
    assert system.gateway is not None
    async with AsyncClient(system.gateway.address, timeout=30) as client:
        task = await client.submit_custom("echo", EXACT)
        done = await client.wait(task.id, timeout=60)
    assert done.state == S.TASK_STATE_COMPLETED, done.error
    echoed = custom_result(done.result)
    assert echoed == EXACT
    assert type(echoed["past_double"]) is int
    assert '"past_double":9007199254740993' in done.result.custom.json


async def test_a_payload_kept_in_the_object_store_keeps_its_integers(system: System) -> None:
    await start(system)
    assert system.gateway is not None
    sent = {"text": "x" * 300_000, "n": 2**53 + 1}  # past the 256 KiB kept inline
    async with AsyncClient(system.gateway.address, timeout=30) as client:
        task = await client.submit_custom("echo", sent)
        done = await client.wait(task.id, timeout=60)
        assert done.state == S.TASK_STATE_COMPLETED, done.error
        assert custom_result(await client.result(task.id)) == sent


async def test_a_raw_client_sends_json_text_and_reads_it_back(system: System) -> None:
    await start(system)
    text = '{"n": 9007199254740993, "list": [18446744073709551615]}'
    request = S.SubmitTaskRequest(custom=S.CustomTaskInput(type="echo", json=text))
    submitted = await system.stub.SubmitTask(request)
    done = await wait_terminal(system.stub, submitted.task.id)
    assert done.state == S.TASK_STATE_COMPLETED, done.error
    assert done.result.custom.json == '{"n":9007199254740993,"list":[18446744073709551615]}'


async def test_a_struct_payload_is_still_taken(system: System) -> None:
    await start(system)
    request = S.SubmitTaskRequest(custom=S.CustomTaskInput(type="greet", payload={"name": "Ada"}))
    submitted = await system.stub.SubmitTask(request)
    done = await wait_terminal(system.stub, submitted.task.id)
    assert custom_result(done.result) == {"greeting": "hello Ada", "attempt": 1}


async def test_the_sdk_refuses_what_json_cannot_hold_before_sending() -> None:
    async with AsyncClient("127.0.0.1:9", timeout=1) as client:
        with pytest.raises(NotJsonLike, match=r'\["n"\]: integer 18446744073709551616 is beyond'):
            await client.submit_custom("echo", {"n": 2**64})


async def test_the_gateway_refuses_json_text_no_decoder_takes_back(system: System) -> None:
    await start(system)
    for text, why in [
        ('{"n": 18446744073709551616}', "beyond 64 bits"),
        ('{"n": NaN}', "NaN is not a JSON number"),
        ("[1, 2]", "must be a JSON object"),
        ("{'n': 1}", "not JSON"),
    ]:
        request = S.SubmitTaskRequest(custom=S.CustomTaskInput(type="echo", json=text))
        assert system.gateway is not None
        async with AsyncClient(system.gateway.address, timeout=30) as c:
            with pytest.raises(InvalidArgument) as caught:
                await c.submit(request)
        assert [v.field for v in caught.value.violations] == ["custom.json"], text
        assert why in caught.value.violations[0].description, text


async def test_the_http_quick_start_passes_a_custom_payload_through_exactly(
    system: System,
) -> None:
    await system.start_store()
    await system.start_worker(custom_handlers.registry())
    await system.start_gateway(http_listen="127.0.0.1:0")
    assert system.gateway is not None
    body = b'{"task_type": "echo", "payload": {"n": 9007199254740993, "m": [-9223372036854775808]}}'
    headers = {"content-type": "application/json"}
    base = f"http://{system.gateway.http.address}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        answer = await http.post("/tasks", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        done = await wait_terminal(system.stub, answer.json()["task"]["id"])
        got = await http.get(f"/v1/tasks/{done.id}")
        nan = b'{"task_type": "echo", "payload": {"x": [NaN]}}'
        refused = await http.post("/tasks", content=nan, headers=headers)
        listed = b'{"task_type": "echo", "payload": [1]}'
        not_object = await http.post("/tasks", content=listed, headers=headers)
    assert done.state == S.TASK_STATE_COMPLETED, done.error
    assert (
        got.json()["task"]["result"]["custom"]["json"]
        == '{"n":9007199254740993,"m":[-9223372036854775808]}'
    )
    assert refused.status_code == 400
    assert [v for v in _violations(refused)] == [
        ('payload["x"][0]', "nan is not a JSON number (NaN and infinities are not)")
    ]
    assert _violations(not_object) == [("payload", "must be a JSON object")]


def _violations(response: httpx.Response) -> list[tuple[str, str]]:
    status = http_status(response)
    found = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            found += [(v.field, v.description) for v in bad.field_violations]
    return found


async def test_every_http_body_passes_custom_payloads_on_as_json_text(system: System) -> None:
    await system.start_store()
    await system.start_worker(custom_handlers.registry())
    await system.start_gateway(http_listen="127.0.0.1:0")
    assert system.gateway is not None
    big = '{"type": "echo", "payload": {"n": 9007199254740993}}'
    headers = {"content-type": "application/json"}
    base = f"http://{system.gateway.http.address}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        one = await http.post("/v1/tasks", content=f'{{"custom": {big}}}', headers=headers)
        batch = f'{{"requests": [{{"custom": {big}}}, {{"custom": {big}}}]}}'
        many = await http.post("/v1/tasks:batch", content=batch, headers=headers)
        spec = f'{{"interval": "3600s", "task": {{"custom": {big}}}}}'
        schedule = f'{{"schedule_id": "exact", "spec": {spec}}}'
        created = await http.post("/v1/schedules", content=schedule, headers=headers)
        nan = '{"requests": [{}, {"custom": {"type": "echo", "payload": {"x": NaN}}}]}'
        refused = await http.post("/v1/tasks:batch", content=nan, headers=headers)
    assert one.status_code == 200 and many.status_code == 200, (one.text, many.text)
    ids = [one.json()["task"]["id"], *(task["id"] for task in many.json()["tasks"])]
    for task_id in ids:
        done = await wait_terminal(system.stub, task_id)
        assert done.result.custom.json == '{"n":9007199254740993}', done.error
    assert created.status_code == 200, created.text
    assert created.json()["schedule"]["spec"]["task"]["custom"]["json"] == '{"n":9007199254740993}'
    nan_is = "nan is not a JSON number (NaN and infinities are not)"
    assert _violations(refused) == [('requests[1].custom.payload["x"]', nan_is)]
