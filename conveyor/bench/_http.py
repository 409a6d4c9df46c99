"""``conveyor bench --http``: the same submits over the gateway's HTTP door, timed beside
gRPC in the same run (issue 21's target: HTTP submit p50 within 0.3 ms of gRPC's).

The client is a minimal HTTP/1.1 one on a kept-alive connection: httpx, measured on the
same machine, spent 1-2 ms of Python per request of its own, so the figure would have
been the client's rather than the gateway's (the gRPC side's client is grpc's C core).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from google.protobuf import json_format

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.bench._results import Target

TARGET_HTTP_EXTRA_P50 = Target("<=", 0.3)
"""Most milliseconds an HTTP submit's p50 may exceed a gRPC submit's."""


class HttpSubmitter:
    """POST /v1/tasks on one kept-alive connection, the request written once."""

    def __init__(self, url: str, request: tasks_pb2.SubmitTaskRequest) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"--http wants http://host:port, not {url!r}")
        self._host, self._port = parts.hostname, parts.port or 80
        body = json_format.MessageToJson(request, indent=None).encode()
        self._request = (
            f"POST /v1/tasks HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def submit(self) -> str:
        """Submits the task; its id."""
        if self._streams is None:
            self._streams = await asyncio.open_connection(self._host, self._port)
        reader, writer = self._streams
        writer.write(self._request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
        data = await reader.readexactly(int(headers["content-length"]))
        if not lines[0].startswith("HTTP/1.1 200"):
            raise RuntimeError(f"HTTP submit answered {lines[0]}: {data[:200]!r}")
        task_id: str = json.loads(data)["task"]["id"]
        return task_id

    async def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


async def sse_watch(url: str, task_id: str) -> AsyncIterator[tasks_pb2.Task]:
    """The tasks of ``GET /v1/tasks/{task_id}:watch``, read as Server-Sent Events on a
    connection of its own, until the stream's end."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    try:
        writer.write(
            f"GET /v1/tasks/{task_id}:watch HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        if not head.startswith("HTTP/1.1 200") or "chunked" not in head.lower():
            raise RuntimeError(f"SSE watch answered {head.splitlines()[0]}")
        buffered = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                return
            buffered += (await reader.readexactly(size + 2))[:-2]
            *complete, buffered = buffered.split(b"\n\n")
            for block in complete:
                lines = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
                if lines.get(b"event", b"message") == b"message" and b"data" in lines:
                    yield _timed_task(json.loads(lines[b"data"])["task"])
    finally:
        writer.close()


def _timed_task(data: dict[str, Any]) -> tasks_pb2.Task:
    """What the scenario reads of an update (id, state, version, update time): parsing
    the whole JSON with json_format costs the one bench process more than the gRPC
    watchers' C parser, and would be measured as fan-out latency."""
    task = tasks_pb2.Task(id=data["id"], state=data["state"], version=int(data["version"]))
    task.update_time.FromJsonString(data["updateTime"])
    return task
