"""The repository keeps each task's namespace from its submitted event and reads one
namespace at a time, in every shape of ListTasks, in counts and in stats (SQLite and
PostgreSQL)."""

from __future__ import annotations

from typing import Any

from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2 as S
from store.repository import TaskRepository
from store.stats import task_stats
from tests.support.factories import T0, Stream, at, submitted, worker_event


def in_namespace(event: events_pb2.TaskEvent, namespace: str) -> events_pb2.TaskEvent:
    event.submitted.task.namespace = namespace
    return event


async def test_each_listing_shape_reads_only_the_namespace(repository: TaskRepository) -> None:
    events = [
        in_namespace(submitted(created=at(i), labels={"team": "x"}), ns)
        for i, ns in enumerate(["a", "b", "a", "b", "a", ""])  # "" from an older gateway
    ]
    stream = Stream()
    await repository.apply(stream.number(*events))
    started = worker_event(events[0].task_id, at(10), 1, started=events_pb2.Started())
    await repository.apply(stream.number(started))
    ids = {
        ns: [e.task_id for e in reversed(events) if e.submitted.task.namespace == ns] for ns in "ab"
    }

    task = await repository.get(events[5].task_id)
    assert task is not None and task.namespace == "default"
    for namespace, expected in ids.items():
        pending = [S.TASK_STATE_PENDING]
        not_started = [i for i in expected if i != events[0].task_id]
        shapes: list[tuple[dict[str, Any], list[str]]] = [
            ({}, expected),
            ({"states": pending}, not_started),
            ({"states": [S.TASK_STATE_PENDING, S.TASK_STATE_RUNNING]}, expected),
            ({"task_type": "text_processing"}, expected),
            ({"labels": {"team": "x"}}, expected),
        ]
        for shape, want in shapes:
            page, _ = await repository.list(namespace=namespace, **shape)
            assert [t.id for t in page] == want, shape
            assert all(t.namespace == namespace for t in page)
        first, token = await repository.list(namespace=namespace, page_size=2)
        rest: list[S.Task] = []
        last = ""
        if token:
            rest, last = await repository.list(namespace=namespace, page_size=2, page_token=token)
        assert ([t.id for t in first + rest], last) == (expected, "")
    everyone, _ = await repository.list(namespace=None)
    assert len(everyone) == 6
    assert [t.id for t in (await repository.list())[0]] == [events[5].task_id]  # default

    assert await repository.count_unfinished("a") == 3
    assert await repository.count_unfinished("c") == 0
    stats = await task_stats(repository.engine, T0, namespace="b")
    assert [(t.type, t.total) for t in stats.types] == [("text_processing", 2)]
