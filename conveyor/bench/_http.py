"""``conveyor bench --http``: the same submits over the gateway's HTTP door, timed beside
gRPC in the same run (issue 21's target: HTTP submit p50 within 0.3 ms of gRPC's)."""

from __future__ import annotations

import json

import httpx
from google.protobuf import json_format

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.bench._results import Target

TARGET_HTTP_EXTRA_P50 = Target("<=", 0.3)
"""Most milliseconds an HTTP submit's p50 may exceed a gRPC submit's."""


class HttpSubmitter:
    """POST /v1/tasks on one kept-alive connection, the body serialized once."""

    def __init__(self, url: str, request: tasks_pb2.SubmitTaskRequest) -> None:
        self._client = httpx.AsyncClient(base_url=url, timeout=30.0)
        self._body = json_format.MessageToJson(request, indent=None).encode()
        self._headers = {"content-type": "application/json"}

    async def submit(self) -> str:
        """Submits the task; its id."""
        response = await self._client.post("/v1/tasks", content=self._body, headers=self._headers)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP submit answered {response.status_code}: {response.text}")
        task_id: str = json.loads(response.content)["task"]["id"]
        return task_id

    async def close(self) -> None:
        await self._client.aclose()
