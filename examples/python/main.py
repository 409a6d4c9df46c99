"""A Python client of Conveyor with the SDK (``pip install conveyor``, no server stack).

Submits each built-in task type, watches them to completion with progress, reads a 9 MB
image result, lists, cancels and retries a delayed task, reads the field violations of an
invalid request, and sends a custom payload with an integer past 2**53 through the
``echo`` type of example_tasks.py (skipped when no worker serves it). Exits non-zero when
anything is off::

    CONVEYOR_GATEWAY_ADDR=127.0.0.1:50051 python examples/python/main.py
"""

from __future__ import annotations

import struct
import sys

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.client import Client, custom_result, resize
from conveyor.errors import InvalidArgument


def check(ok: bool, what: str) -> None:
    if not ok:
        sys.exit(f"check failed: {what}")


def bmp(width: int, height: int) -> bytes:
    """An uncompressed 24-bit BMP, a gradient: big input without an image library."""
    row = (width * 3 + 3) // 4 * 4
    header = struct.pack("<2sIHHI", b"BM", 54 + row * height, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, row * height, 0, 0, 0, 0)
    pad = bytes(row - width * 3)
    rows = (
        b"".join(bytes((x % 256, y % 256, (x + y) % 256)) for x in range(width)) + pad
        for y in range(height)
    )
    return header + info + b"".join(rows)


def main() -> None:
    with Client() as client:  # CONVEYOR_GATEWAY_ADDR or 127.0.0.1:50051
        # 1. Every built-in type.
        submitted = [
            client.submit_text("Hello world. Hello Conveyor!", transforms=["slug"]),
            client.submit_summarization(
                "Task queues run work in the background. Workers pull tasks. Bananas are yellow.",
                max_sentences=1,
            ),
            client.submit_batch(["a b", "c d e", "f"], "word_count", chunk_size=1),
            client.submit_image(bmp(1024, 768), [resize(2048, 1536)], output_format="bmp"),
        ]
        for task in submitted:
            print(f"submitted {task.type} {task.id}")

        # 2. Watched to completion; the image result is read whole, however large.
        for task in submitted:
            for update in client.watch(task.id):
                progress = update.progress
                print(
                    f"  watch {update.id} v{update.version} "
                    f"{tasks_pb2.TaskState.Name(update.state)} "
                    f"progress {progress.current}/{progress.total}"
                )
            check(update.state == tasks_pb2.TASK_STATE_COMPLETED, f"{task.type} completed")
        image = client.result(submitted[3].id).image_processing
        check((image.width, image.height) == (2048, 1536), f"image {image.width}x{image.height}")
        check(len(image.image) == image.size_bytes, "the whole image arrived")
        print(f"image {image.width}x{image.height}, {len(image.image)} bytes")

        # 3. List.
        listed = {task.id for task in client.list(page_size=10).tasks}
        check(all(task.id in listed for task in submitted), "ListTasks has every task")
        print(f"listed {len(listed)} tasks")

        # 4. Cancel a delayed task, then run it again.
        delayed = client.submit_text("later", delay=3600)
        cancelled = client.cancel(delayed.id)
        check(cancelled.state == tasks_pb2.TASK_STATE_CANCELLED, "cancelled")
        retried = client.retry(delayed.id)
        check(retried.state != tasks_pb2.TASK_STATE_CANCELLED, "retry re-runs it")
        print(f"cancelled {delayed.id}, retried: {tasks_pb2.TaskState.Name(retried.state)}")

        # 5. An invalid request: InvalidArgument with the server's field violations.
        try:
            client.submit_text("")
        except InvalidArgument as error:
            check(bool(error.violations), "field violations")
            for violation in error.violations:
                print(f"bad request: {violation.field}: {violation.description}")
        else:
            sys.exit("an empty text was accepted")

        # 6. A custom type's payload, a dict in and a dict out, integers exact.
        sent = {"n": 2**53 + 1, "items": [{"id": 2**64 - 1}]}
        try:
            echo = client.submit_custom("echo", sent)
        except InvalidArgument as error:
            print(f"custom echo: skipped ({error})")
        else:
            done = client.wait(echo.id, timeout=60)
            check(done.state == tasks_pb2.TASK_STATE_COMPLETED, f"echo {done.error.message}")
            check(custom_result(done.result) == sent, f"echo gave {done.result.custom.json}")
            print(f"custom echo: {custom_result(done.result)['n']} intact")
    print("python example: ok")


if __name__ == "__main__":
    main()
