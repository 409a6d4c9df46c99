"""WatchTask as Server-Sent Events: the same updates as the gRPC stream, resumed by
``Last-Event-ID``, ended by an ``end`` event, and counted against the watch limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from google.protobuf import json_format

from conveyor.api.tasks.v1 import tasks_pb2 as S
from gateway import sse
from tests.conftest import System
from tests.support.helpers import png, wait_terminal, watch_all
from tests.support.http import http_status, parsed, start_with_http

pytestmark = [pytest.mark.integration]


@dataclass
class Event:
    name: str
    id: str
    data: str


async def events(response: httpx.Response) -> AsyncIterator[Event]:
    """The events of an SSE response, as they arrive."""
    assert response.headers["content-type"].startswith("text/event-stream")
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield Event("comment", "", line)
            continue
        if not line:
            if fields:
                yield Event(fields.get("event", "message"), fields.get("id", ""), fields["data"])
            fields = {}
            continue
        key, _, value = line.partition(": ")
        fields[key] = value


async def delayed_task(http: httpx.AsyncClient, delay: str = "1s") -> str:
    """A task SCHEDULED for ``delay``, then run."""
    body = {"textProcessing": {"text": "watched"}, "options": {"delay": delay}}
    return parsed(await http.post("/v1/tasks", json=body), S.SubmitTaskResponse).task.id


def task_of(event: Event) -> S.Task:
    return json_format.Parse(event.data, S.WatchTaskResponse()).task


async def test_sse_streams_the_watch_live_and_resumes_from_last_event_id(
    system: System,
) -> None:
    async with await start_with_http(system) as http:
        task_id = await delayed_task(http)
        seen: list[Event] = []
        async with http.stream("GET", f"/v1/tasks/{task_id}:watch") as response:
            assert response.status_code == 200
            seen = [event async for event in events(response)]
        assert task_of(seen[0]).state == S.TASK_STATE_SCHEDULED
        seen = [e for e in seen if e.name != "comment"]
        assert seen[-1].name == "end"
        updates = [task_of(e) for e in seen[:-1]]
        assert all(e.name == "message" for e in seen[:-1])
        assert [e.id for e in seen[:-1]] == [str(t.version) for t in updates]
        assert updates[-1].state == S.TASK_STATE_COMPLETED
        assert [t.version for t in updates] == sorted({t.version for t in updates})

        # Resuming after the first event gives exactly what gRPC gives after that version.
        first = updates[0].version
        headers = {"Last-Event-ID": str(first)}
        async with http.stream("GET", f"/v1/tasks/{task_id}:watch", headers=headers) as again:
            resumed = [task_of(e) async for e in events(again) if e.name == "message"]
        assert resumed == await watch_all(system.stub, task_id, after_version=first)
        assert resumed == updates[1:]
        query = f"/v1/tasks/{task_id}:watch?afterVersion={first}"
        async with http.stream("GET", query) as by_query:
            assert [task_of(e) async for e in events(by_query) if e.name == "message"] == resumed


async def test_a_watch_that_cannot_start_is_a_json_error(system: System) -> None:
    async with await start_with_http(system) as http:
        missing = await http.get(f"/v1/tasks/{'0' * 26}:watch")
        assert missing.status_code == 404 and http_status(missing).code == 5
        task_id = await delayed_task(http)
        bad = await http.get(f"/v1/tasks/{task_id}:watch", headers={"Last-Event-ID": "x"})
        assert bad.status_code == 400 and "Last-Event-ID" in bad.text


async def test_sse_watches_count_against_the_gateways_watch_limit(system: System) -> None:
    async with await start_with_http(system, limits=limits_with(max_watches=1)) as http:
        task_id = await delayed_task(http, "3600s")
        async with http.stream("GET", f"/v1/tasks/{task_id}:watch") as held:
            async for _ in events(held):
                break  # open and live
            refused = await http.get(f"/v1/tasks/{task_id}:watch")
            assert refused.status_code == 429 and http_status(refused).code == 8
        assert (await http.post(f"/v1/tasks/{task_id}:cancel")).status_code == 200
        # The closed stream gave its place back.
        async with asyncio.timeout(30):
            while (await http.get(f"/v1/tasks/{task_id}:watch")).status_code == 429:
                await asyncio.sleep(0.05)


def limits_with(**changes: int) -> object:
    from dataclasses import replace

    from conveyor.config import Limits

    return replace(Limits(), **changes)


async def test_the_gateway_stops_with_event_streams_open(system: System) -> None:
    async with await start_with_http(system) as http:
        task_id = await delayed_task(http, "3600s")
        async with http.stream("GET", f"/v1/tasks/{task_id}:watch") as held:
            async for _ in events(held):
                break
            assert system.gateway is not None
            async with asyncio.timeout(30):  # bounded by the grace period, not by the reader
                await system.gateway.stop(0.5)
            system.gateway = None


async def test_an_idle_stream_sends_keepalive_comments(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sse, "KEEPALIVE_SECONDS", 0.05)
    async with await start_with_http(system) as http:
        task_id = await delayed_task(http, "3600s")
        async with http.stream("GET", f"/v1/tasks/{task_id}:watch") as held:
            names = []
            async for event in events(held):
                names.append(event.name)
                if len(names) == 3:
                    break
        assert names == ["message", "comment", "comment"]
        assert (await http.post(f"/v1/tasks/{task_id}:cancel")).status_code == 200


async def test_streams_of_one_task_get_the_same_events_with_or_without_payloads(
    system: System,
) -> None:
    async with await start_with_http(system) as http:
        image = S.ImageProcessingInput(
            image=png(), operations=[S.ImageOperation(grayscale=S.ImageGrayscale())]
        )
        body = json_format.MessageToDict(S.SubmitTaskRequest(image_processing=image))
        task_id = parsed(await http.post("/v1/tasks", json=body), S.SubmitTaskResponse).task.id
        await wait_terminal(system.stub, task_id)

        async def watched(query: str = "") -> list[Event]:
            path = f"/v1/tasks/{task_id}:watch?afterVersion=1{query}"
            async with http.stream("GET", path) as response:
                return [e async for e in events(response) if e.name == "message"]

        full = await watched()
        slim = await watched("&omitPayloads=true")
        assert await watched() == full
        assert [task_of(e) for e in full] == await watch_all(system.stub, task_id, after_version=1)
        assert task_of(full[-1]).result.image_processing.image.startswith(b"\x89PNG")
        # The same versions, rendered without the image bytes, not shared with the full ones.
        assert [e.id for e in slim] == [e.id for e in full]
        last = task_of(slim[-1])
        assert last.result.image_processing.image == b""
        assert last.result.payload.size_bytes == task_of(full[-1]).result.ByteSize()
