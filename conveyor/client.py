"""The Python SDK of Conveyor: submit tasks, read them and watch them live.

:class:`AsyncClient` is the asyncio client; :class:`Client` is the same API for plain
scripts. Every failed call raises the :mod:`conveyor.errors` class of its status, and an
:class:`~conveyor.errors.InvalidArgument` lists the server's field violations.

In asyncio code::

    import asyncio
    from conveyor.client import AsyncClient

    async def main() -> None:
        async with AsyncClient("127.0.0.1:50051") as client:
            task = await client.submit_text("Hello, world", transforms=["upper"])
            async for update in client.watch(task.id):
                print(update.state, update.progress.message)

    asyncio.run(main())

In a script::

    from conveyor.client import Client, thumbnail

    with Client() as client:  # CONVEYOR_GATEWAY_ADDR or 127.0.0.1:50051
        task = client.submit_image(open("cat.png", "rb").read(), [thumbnail(128, 128)])
        done = client.wait(task.id, timeout=60)
        print(done.result.image_processing.width)

Requests for :meth:`AsyncClient.submit` and :meth:`AsyncClient.submit_many` come from
the builders here (:func:`text_processing`, :func:`ai_summarization`,
:func:`batch_processing`, :func:`image_processing`, :func:`custom`), which take the
options of :func:`options` as keyword arguments::

    request = text_processing("hi", ["slug"], priority="high", labels={"team": "web"})

The same requests are the templates of periodic schedules, and the clients control each
task type's queue::

    client.create_schedule("hourly-report", custom("report"), cron="0 * * * *")
    client.set_queue_limits("image_processing", max_concurrency=3)

When the gateway authenticates callers, a client sends an API key (or a JWT) and may
ask for a namespace; both default to ``CONVEYOR_API_KEY`` and ``CONVEYOR_NAMESPACE``::

    client = Client("conveyor.example.com:50051", api_key="cvk_...", namespace="team-a")
"""

from __future__ import annotations

from conveyor._client_async import AsyncClient
from conveyor._client_builders import (
    BATCH_OPERATIONS,
    IMAGE_FORMATS,
    PRIORITIES,
    STATES,
    TRANSFORMS,
    EnumArg,
    OptionArgs,
    ai_summarization,
    batch_processing,
    custom,
    custom_result,
    enum_value,
    grayscale,
    image_processing,
    options,
    resize,
    rotate,
    text_processing,
    thumbnail,
)
from conveyor._client_channel import MAX_MESSAGE_BYTES, WatchPolicy, channel_options
from conveyor._client_errors import describe, error_from_rpc, field_violations
from conveyor._client_keys import ROLES
from conveyor._client_schedules import CATCH_UP_POLICIES, OVERLAP_POLICIES, schedule_spec
from conveyor._client_sync import Client

__all__ = [
    "BATCH_OPERATIONS",
    "CATCH_UP_POLICIES",
    "IMAGE_FORMATS",
    "MAX_MESSAGE_BYTES",
    "OVERLAP_POLICIES",
    "PRIORITIES",
    "ROLES",
    "STATES",
    "TRANSFORMS",
    "AsyncClient",
    "Client",
    "EnumArg",
    "OptionArgs",
    "WatchPolicy",
    "ai_summarization",
    "batch_processing",
    "channel_options",
    "custom",
    "custom_result",
    "describe",
    "enum_value",
    "error_from_rpc",
    "field_violations",
    "grayscale",
    "image_processing",
    "options",
    "resize",
    "rotate",
    "schedule_spec",
    "text_processing",
    "thumbnail",
]
