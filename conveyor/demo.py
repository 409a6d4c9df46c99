"""``conveyor dev --demo``: one task of each built-in type, watched live in a table."""

from __future__ import annotations

import asyncio
import io

from PIL import Image, ImageDraw
from rich.console import Console
from rich.live import Live
from rich.table import Table

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.client import AsyncClient, grayscale, rotate, thumbnail
from conveyor.errors import InvalidArgument
from conveyor.tasks import STATE_NAMES, is_terminal

DEMO_TEXT = (
    "Conveyor runs long tasks in the background. Clients submit typed tasks over gRPC and "
    "get an answer in about a millisecond. Workers pull the tasks from NATS JetStream and "
    "run them. The store keeps every task's state and streams each change to watchers. "
    "Bananas are a good source of potassium. Nothing acknowledged is ever lost, because "
    "every step is recorded in durable streams before it is acknowledged."
)


def demo_image() -> bytes:
    """A small generated PNG: a gradient with a circle."""
    image = Image.new("RGB", (320, 200))
    draw = ImageDraw.Draw(image)
    for x in range(320):
        draw.line([(x, 0), (x, 199)], fill=(x * 255 // 319, 90, 200 - x * 200 // 319))
    draw.ellipse((110, 50, 210, 150), fill=(250, 220, 40))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def describe(task: tasks_pb2.Task) -> str:
    """One line about a task's result or progress."""
    kind = task.result.WhichOneof("result")
    if task.state == tasks_pb2.TASK_STATE_FAILED:
        return f"error: {task.error.message}"
    if kind == "text_processing":
        text = task.result.text_processing
        top = ", ".join(f"{w.word}x{w.count}" for w in text.top_words[:3])
        return f"{text.words} words, {text.sentences} sentences; top: {top}"
    if kind == "ai_summarization":
        return task.result.ai_summarization.summary[:90] + "..."
    if kind == "batch_processing":
        batch = task.result.batch_processing
        return f"{batch.succeeded}/{batch.total} items ok in {batch.chunks} chunks"
    if kind == "image_processing":
        image = task.result.image_processing
        size = f"{image.original_width}x{image.original_height} -> {image.width}x{image.height}"
        return f"{size} {image.mode}"
    if task.progress.total:
        return f"{task.progress.current}/{task.progress.total} {task.progress.message}"
    return ""


def table(tasks: dict[str, tasks_pb2.Task]) -> Table:
    view = Table(title="conveyor dev --demo")
    for column in ("type", "id", "state", "attempt", "result / progress"):
        view.add_column(column)
    for task in tasks.values():
        view.add_row(
            task.type, task.id, STATE_NAMES.get(task.state, "?"), str(task.attempt), describe(task)
        )
    return view


async def _demo(gateway: str) -> None:
    async with AsyncClient(gateway) as client:
        for _ in range(60):  # workers register their types as they start
            try:
                submitted = [
                    await client.submit_text(DEMO_TEXT, transforms=["slug"], top_words=5),
                    await client.submit_summarization(DEMO_TEXT, max_sentences=2),
                    await client.submit_batch(
                        [str(i) for i in range(2000)], "square", chunk_size=100
                    ),
                    await client.submit_image(
                        demo_image(),
                        [thumbnail(160, 160), grayscale(), rotate(90)],
                        output_format="png",
                    ),
                ]
                break
            except InvalidArgument:
                await asyncio.sleep(0.5)
        else:
            raise RuntimeError("the workers did not register their task types")
        tasks = {task.id: task for task in submitted}
        with Live(table(tasks), refresh_per_second=10) as live:

            async def follow(task_id: str) -> None:
                async for update in client.watch(task_id):
                    tasks[task_id] = update
                    live.update(table(tasks))

            await asyncio.gather(*(follow(task_id) for task_id in tasks))
        finals = [await client.get(task_id, omit_payloads=True) for task_id in tasks]
        Console().print(table({t.id: t for t in finals}))
        done = sum(1 for t in finals if is_terminal(t.state))
        print(f"{done} of {len(finals)} demo tasks finished. Try: conveyor get {finals[0].id}")


def run_demo(gateway: str) -> None:
    """Submits the demo tasks to the gateway and shows them until they finish."""
    asyncio.run(_demo(gateway))
