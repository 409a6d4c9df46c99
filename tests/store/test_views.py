"""What a read returns beyond the snapshot: a task's input (GetTask's FULL view) and the
trace id of its submit, on SQLite and on PostgreSQL."""

from __future__ import annotations

from store.repository import TaskRepository
from tests.support.factories import Stream, submitted

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_the_full_view_adds_the_input_and_the_basic_one_does_not(
    repository: TaskRepository,
) -> None:
    event = submitted()
    await repository.apply(Stream().number(event))
    basic = await repository.get(event.task_id)
    full = await repository.get(event.task_id, with_input=True)
    assert basic is not None and not basic.HasField("input")
    assert full is not None and full.input == event.submitted.input
    assert full.input.text_processing.text == "Hello, world."
    page, _ = await repository.list()
    assert [t.HasField("input") for t in page] == [False]


async def test_omitting_payloads_leaves_out_input_image_bytes_but_describes_them(
    repository: TaskRepository,
) -> None:
    image = b"\x89PNG" + bytes(5000)
    event = submitted(task_type="image_processing", image=image)
    await repository.apply(Stream().number(event))
    task = await repository.get(event.task_id, omit_payloads=True, with_input=True)
    assert task is not None and task.input.HasField("image_processing")
    assert task.input.image_processing.image == b""
    assert task.input.payload.size_bytes == event.submitted.input.ByteSize()
    assert task.input.payload.content_type.endswith("conveyor.api.tasks.v1.TaskInput")


async def test_the_trace_id_of_the_submit_is_kept_and_read_back(
    repository: TaskRepository,
) -> None:
    traced, untraced = submitted(), submitted()
    traced.submitted.task.trace_id = TRACE
    await repository.apply(Stream().number(traced, untraced))
    got = await repository.get(traced.task_id)
    assert got is not None and got.trace_id == TRACE
    page, _ = await repository.list()
    assert {t.id: t.trace_id for t in page} == {traced.task_id: TRACE, untraced.task_id: ""}
    history = await repository.history(traced.task_id)
    assert [t.trace_id for t in history] == [TRACE]
