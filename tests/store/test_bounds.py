"""Messages to clients stay under the bound whatever the task holds."""

from __future__ import annotations

import hashlib

from conveyor import payloads
from conveyor.api.tasks.v1 import tasks_pb2
from store.bounds import bounded, fit_page, omitted
from store.pagination import decode_token

LIMIT = 64 * 1024


def text_task(size: int, task_id: str = "t1") -> tasks_pb2.Task:
    result = tasks_pb2.TaskResult(
        text_processing=tasks_pb2.TextProcessingResult(
            words=7,
            transforms=[
                tasks_pb2.TransformOutput(transform=tasks_pb2.TEXT_TRANSFORM_UPPER, text="A" * size)
            ],
        )
    )
    return tasks_pb2.Task(id=task_id, state=tasks_pb2.TASK_STATE_COMPLETED, result=result)


def test_a_task_that_fits_is_sent_as_it_is() -> None:
    task = text_task(100)
    assert bounded(task, LIMIT) is task


def test_a_large_result_is_abridged_with_a_reference_to_all_of_it() -> None:
    task = text_task(200_000)
    whole = task.result.SerializeToString()
    slim = bounded(task, LIMIT)
    assert slim.ByteSize() <= LIMIT
    assert slim.result.text_processing.words == 7  # the statistics stay
    assert slim.result.text_processing.transforms[0].text == ""
    assert slim.result.payload.size_bytes == len(whole)
    assert slim.result.payload.sha256 == hashlib.sha256(whole).hexdigest()
    assert slim.result.payload.name == ""  # the store has it
    assert task.result.text_processing.transforms[0].text  # the original is untouched


def test_a_result_too_large_even_abridged_is_left_out_but_referenced() -> None:
    task = tasks_pb2.Task(id="t1", result=tasks_pb2.TaskResult())
    task.result.custom.json = '{"blob":"' + "x" * 200_000 + '"}'
    slim = bounded(task, LIMIT)
    assert slim.ByteSize() <= LIMIT
    assert slim.result.WhichOneof("result") is None
    assert slim.result.payload.size_bytes == task.result.ByteSize()


def test_an_object_store_reference_is_kept_as_it_is() -> None:
    task = text_task(200_000)
    reference = payloads.describe(b"stored", name="t1/result/1")
    task.result.payload.CopyFrom(reference)
    assert bounded(task, LIMIT).result.payload == reference


def test_too_many_attempt_errors_drop_the_oldest() -> None:
    task = tasks_pb2.Task(id="t1")
    for n in range(100):
        task.attempt_errors.add(attempt=n + 1, message="e" * 4000)
    slim = bounded(task, LIMIT)
    assert slim.ByteSize() <= LIMIT
    assert slim.attempt_errors[-1].attempt == 100


def test_omitted_clears_image_bytes_of_a_copy() -> None:
    image = tasks_pb2.ImageProcessingResult(image=b"png" * 1000, width=3)
    task = tasks_pb2.Task(id="t1", result=tasks_pb2.TaskResult(image_processing=image))
    slim = omitted(task)
    assert slim.result.image_processing.image == b"" and slim.result.image_processing.width == 3
    assert slim.result.payload.size_bytes == task.result.ByteSize()
    assert task.result.image_processing.image  # shared with other watchers: untouched
    text = text_task(10)
    assert omitted(text) is text


def test_a_page_over_the_bound_ends_early_and_its_token_continues_after_it() -> None:
    tasks = []
    for n in range(40):
        task = tasks_pb2.Task(id=f"t{n:02d}")
        task.create_time.FromMicroseconds(1_000_000 * (100 - n))
        task.labels.update({f"k{i}": "v" * 250 for i in range(20)})
        tasks.append(task)
    page, token = fit_page(tasks, "", LIMIT)
    assert 1 <= len(page) < len(tasks)
    assert tasks_pb2.ListTasksResponse(tasks=page, next_page_token=token).ByteSize() <= LIMIT
    cursor = decode_token(token)
    assert cursor is not None and cursor.task_id == page[-1].id
    assert cursor.create_time == page[-1].create_time.ToDatetime(tzinfo=cursor.create_time.tzinfo)


def test_a_page_that_fits_keeps_its_token() -> None:
    tasks = [tasks_pb2.Task(id=f"t{n}") for n in range(3)]
    assert fit_page(tasks, "next", LIMIT) == (tasks, "next")
