"""What each ``conveyor`` subcommand does, through the SDK and the renderer."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from google.protobuf import json_format

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.cli.errors import UsageError
from conveyor.cli.render import Output, follow
from conveyor.cli.requests import submit_request
from conveyor.client import (
    AsyncClient,
)
from conveyor.config import ClientSettings, load_environ
from conveyor.errors import FailedPrecondition
from conveyor.tls import client_credentials


async def _write_result(
    client: AsyncClient, out: Output, task_id: str, path: str, images_only: bool = True
) -> int:
    """Writes the complete result, streamed however large: an image as its bytes, any
    other result as JSON (unless ``images_only``)."""
    result = await client.result(task_id)
    if result.WhichOneof("result") == "image_processing":
        data = result.image_processing.image
    elif images_only:
        raise UsageError(f"task {task_id} has no image result to write")
    else:
        data = json_format.MessageToJson(result, indent=2).encode() + b"\n"
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    out.note(f"wrote {len(data):,} bytes to {path}")
    return 0


async def submit(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """``conveyor submit``: queue, then optionally follow and save the image."""
    response = await client.submit_response(submit_request(args))
    if not (args.watch or args.output):
        out.submitted(response)
        return 0
    out.submitted(response, quiet_json=True)
    code = await follow(client, out, response.task.id)
    if code == 0 and args.output:
        return await _write_result(client, out, response.task.id, args.output)
    return code


async def get(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """``conveyor get``: one task without its payloads, --input with its input, the end
    of its error's traceback (--traceback all of it); --output writes the result."""
    task = await client.get(args.id, omit_payloads=True, with_input=args.input)
    out.task(task, whole_traceback=args.traceback)
    if args.output:
        return await _write_result(client, out, args.id, args.output, images_only=False)
    return 0


async def list_tasks(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """``conveyor list``: up to --limit tasks, over as many pages as that takes."""
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    tasks: list[tasks_pb2.Task] = []
    token = args.page_token
    while True:
        page = await client.list(
            states=args.states or (),
            type=args.type,
            labels=dict(args.labels or []),
            page_size=min(args.limit - len(tasks), 1000),
            page_token=token,
        )
        tasks.extend(page.tasks[: args.limit - len(tasks)])
        token = page.next_page_token
        if not token or len(tasks) >= args.limit:
            break
    out.task_list(tasks, token)
    return 0


async def watch(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """``conveyor watch ID``: 0 when the task completes, 1 when it fails or is cancelled.
    ``conveyor watch [--state S] [--type T] [--label K=V]``: each change of the matching
    tasks, one line each (JSON lines with --json), until interrupted."""
    if args.id:
        if args.states or args.type or args.labels:
            raise UsageError("--state, --type and --label go without a task id")
        return await follow(client, out, args.id)
    changes = client.watch_tasks(
        states=args.states or [], type=args.type, labels=dict(args.labels or [])
    )
    async with contextlib.aclosing(changes):
        async for task in changes:
            if out.as_json:
                out.json(task, lines=True)
            else:
                out.changed(task)
    return 0


async def cancel(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """``conveyor cancel``."""
    out.changed(await client.cancel(args.id))
    return 0


async def retry(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """``conveyor retry ID`` or ``conveyor retry --failed [--type T] [--label K=V]``."""
    if bool(args.id) == bool(args.failed):
        raise UsageError("give a task id, or --failed to re-run every failed task")
    if args.id:
        if args.type or args.labels:
            raise UsageError("--type and --label go with --failed")
        out.changed(await client.retry(args.id))
        return 0
    # Collect first: re-driving changes the very listing being paged through.
    failed = [
        task.id
        async for task in client.iter_tasks(
            states=[tasks_pb2.TASK_STATE_FAILED],
            type=args.type,
            labels=dict(args.labels or []),
            page_size=1000,
        )
    ]
    retried = 0
    for task_id in failed:
        try:
            out.changed(await client.retry(task_id))
            retried += 1
        except FailedPrecondition as exc:  # re-driven or finished meanwhile by someone else
            out.note(f"skipped {task_id}: {exc.message}")
    out.note(f"{retried} of {len(failed)} failed tasks queued again")
    return 0


async def delete(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """``conveyor delete ID``: a finished task and its history."""
    await client.delete(args.id)
    if out.as_json:
        out.json({"deleted": args.id})
    else:
        out.note(f"deleted task {args.id}")
    return 0


async def purge(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """``conveyor purge --older-than AGE [--state S] [--type T]``: finished tasks."""
    count = await client.purge(states=args.states or (), type=args.type, older_than=args.older_than)
    if out.as_json:
        out.json({"purged": count})
    else:
        out.note(f"deleted {count} finished tasks")
    return 0


async def bench(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """``conveyor bench``: in :mod:`conveyor.cli.bench`, imported only when asked for."""
    from conveyor.cli.bench import run_command

    return await run_command(client, out, args)


async def schedules_and_queues(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """``conveyor schedule ...|pause|resume|queues|limit``: in :mod:`conveyor.cli.schedules`."""
    from conveyor.cli.schedules import run_command

    return await run_command(client, out, args)


async def auth(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """``conveyor auth ...``: in :mod:`conveyor.cli.keys`."""
    from conveyor.cli.keys import run_command

    return await run_command(client, out, args)


async def stats_and_top(client: AsyncClient, out: Output, args: argparse.Namespace) -> int:
    """``conveyor stats`` and ``conveyor top``: in :mod:`conveyor.cli.stats`."""
    from conveyor.cli.stats import run_command

    return await run_command(client, out, args)


COMMANDS = {
    "submit": submit,
    "get": get,
    "list": list_tasks,
    "watch": watch,
    "cancel": cancel,
    "retry": retry,
    "delete": delete,
    "purge": purge,
    "bench": bench,
    "schedule": schedules_and_queues,
    "pause": schedules_and_queues,
    "resume": schedules_and_queues,
    "queues": schedules_and_queues,
    "limit": schedules_and_queues,
    "stats": stats_and_top,
    "top": stats_and_top,
    "auth": auth,
}


async def run(
    args: argparse.Namespace, addr: str, out: Output, api_key: str = "", namespace: str = ""
) -> int:
    """Runs the parsed command against the gateway at addr, with ``api_key`` and in
    ``namespace`` ("" sends none)."""
    # The .env file's TLS settings count too, as its CONVEYOR_GATEWAY_ADDR does.
    credentials = client_credentials(ClientSettings.from_env(load_environ()))
    async with AsyncClient(
        addr, api_key=api_key, namespace=namespace, credentials=credentials
    ) as client:
        return await COMMANDS[args.command](client, out, args)
