"""What the console reads over the HTTP door, against real servers: a task's input (the
FULL view), the trace id of its submit, tasks by creation time, and per-bucket counts."""

from __future__ import annotations

import base64
import datetime as dt
import io
import os

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from PIL import Image

from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.tasks import from_timestamp
from tests.conftest import System
from tests.support.helpers import wait_terminal
from tests.support.http import parsed, start_with_http

pytestmark = [pytest.mark.integration]

TRACE = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE}-b7ad6b7169203331-01"


async def test_a_task_read_in_full_has_its_input_and_its_trace_id(system: System) -> None:
    async with await start_with_http(system) as http:
        body = {"textProcessing": {"text": "Read me back.", "transforms": ["TEXT_TRANSFORM_UPPER"]}}
        submitted = await http.post("/v1/tasks", json=body, headers={"traceparent": TRACEPARENT})
        task = parsed(submitted, S.SubmitTaskResponse).task
        # The submit joined the caller's trace, and the task keeps it.
        assert task.trace_id == TRACE
        await wait_terminal(system.stub, task.id)
        basic = parsed(await http.get(f"/v1/tasks/{task.id}"), S.GetTaskResponse).task
        assert basic.trace_id == TRACE and not basic.HasField("input")
        full = parsed(await http.get(f"/v1/tasks/{task.id}?view=TASK_VIEW_FULL"), S.GetTaskResponse)
        assert full.task.input.text_processing.text == "Read me back."
        assert list(full.task.input.text_processing.transforms) == [S.TEXT_TRANSFORM_UPPER]
        assert full.task.result == basic.result
        # Without a traceparent the submit starts a trace of its own, when tracing is set
        # up in this process (services set it up at start); else it has none.
        other = await http.post("/v1/tasks", json={"textProcessing": {"text": "untraced"}})
        fresh = parsed(other, S.SubmitTaskResponse).task.trace_id
        tracing_on = isinstance(trace.get_tracer_provider(), TracerProvider)
        assert len(fresh) == (32 if tracing_on else 0) and fresh != TRACE


async def test_a_full_read_of_a_large_image_stays_bounded(system: System) -> None:
    limit = 256 * 1024
    await system.start_store(max_response_bytes=limit)
    await system.start_worker()
    await system.start_gateway(http_listen="127.0.0.1:0")
    assert system.gateway is not None
    address = f"http://{system.gateway.http.address}"
    async with httpx.AsyncClient(base_url=address, timeout=30) as http:
        image = _png(600, 600)
        assert len(image) > limit
        body = {
            "imageProcessing": {
                "image": base64.b64encode(image).decode(),
                "operations": [{"grayscale": {}}],
            }
        }
        task = parsed(await http.post("/v1/tasks", json=body), S.SubmitTaskResponse).task
        await wait_terminal(system.stub, task.id)
        response = await http.get(f"/v1/tasks/{task.id}?view=TASK_VIEW_FULL")
        full = parsed(response, S.GetTaskResponse).task
        assert full.ByteSize() <= limit
        assert full.input.image_processing.image == b""  # left out, and described
        assert int(full.input.payload.size_bytes) > len(image)
        assert [op.WhichOneof("operation") for op in full.input.image_processing.operations] == [
            "grayscale"
        ]
        slim = await http.get(f"/v1/tasks/{task.id}?view=TASK_VIEW_FULL&omitPayloads=true")
        assert parsed(slim, S.GetTaskResponse).task.input.image_processing.image == b""


def _png(width: int, height: int) -> bytes:
    """A PNG of noise, which does not compress."""
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(out, "PNG")
    return out.getvalue()


async def test_tasks_are_listed_by_creation_time_and_counted_per_bucket(system: System) -> None:
    async with await start_with_http(system) as http:
        first = await _submit(http, "first")
        await wait_terminal(system.stub, first.id)
        middle = await _submit(http, "middle")
        await wait_terminal(system.stub, middle.id)
        last = await _submit(http, "last")
        await wait_terminal(system.stub, last.id)
        after = _rfc3339(from_timestamp(middle.create_time))
        listed = parsed(await http.get(f"/v1/tasks?createdAfter={after}"), S.ListTasksResponse)
        assert [t.id for t in listed.tasks] == [last.id, middle.id]
        before = f"/v1/tasks?createdBefore={after}"
        assert [t.id for t in parsed(await http.get(before), S.ListTasksResponse).tasks] == [
            first.id
        ]
        response = await http.get("/v1/tasks:stats?window=3600s&bucket=60s")
        stats = parsed(response, S.GetTaskStatsResponse)
        assert len(stats.series) == 60
        assert stats.series[0].start_time == stats.since
        assert sum(b.submitted for b in stats.series) == 3
        assert sum(b.completed for b in stats.series) == 3
        assert sum(b.failed for b in stats.series) == 0
        # The newest bucket holds what just happened.
        assert stats.series[-1].submitted + stats.series[-2].submitted == 3


async def _submit(http: httpx.AsyncClient, text: str) -> S.Task:
    response = await http.post("/v1/tasks", json={"textProcessing": {"text": text}})
    return parsed(response, S.SubmitTaskResponse).task


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
