"""ListTasks' filters and keyset pages, on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass

import pytest

from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.errors import InvalidArgument
from conveyor.ids import new_task_id
from store.pagination import MAX_PAGE_SIZE, Cursor, encode_token
from store.repository import TaskRepository
from tests.support.factories import Stream, at, error, submitted, text_result, worker_event

PENDING, COMPLETED = tasks_pb2.TASK_STATE_PENDING, tasks_pb2.TASK_STATE_COMPLETED
FAILED = tasks_pb2.TASK_STATE_FAILED


@dataclass(frozen=True)
class Made:
    """What the test knows about a task it created."""

    id: str
    created: dt.datetime
    type: str
    state: int
    labels: dict[str, str]


async def make_tasks(repository: TaskRepository, count: int = 30) -> list[Made]:
    """``count`` tasks of two types, three states and a few labels; tasks 10 to 14 share
    one create time so the id breaks the tie."""
    made: list[Made] = []
    events: list[events_pb2.TaskEvent] = []
    for i in range(count):
        created = at(10) if 10 <= i <= 14 else at(i)
        task_id = new_task_id(int(created.timestamp() * 1000))
        task_type = "batch_processing" if i % 3 == 0 else "text_processing"
        labels = {"team": "a" if i % 2 else "b"}
        if i % 5 == 0:
            labels["env"] = "prod"
        events.append(submitted(task_id, task_type=task_type, created=created, labels=labels))
        state = PENDING
        if i % 4 in (1, 2):
            events.append(
                worker_event(task_id, at(100), 1, task_type=task_type, started=events_pb2.Started())
            )
        if i % 4 == 1:
            state = COMPLETED
            result = events_pb2.Completed(result=text_result(words=i))
            events.append(worker_event(task_id, at(101), 1, task_type=task_type, completed=result))
        elif i % 4 == 2:
            state = FAILED
            failed = events_pb2.Failed(error=error(1, "bad", at(101)))
            events.append(worker_event(task_id, at(101), 1, task_type=task_type, failed=failed))
        made.append(Made(task_id, created, task_type, state, labels))
    await repository.apply(Stream().number(*events))
    return made


def newest_first(tasks: list[Made]) -> list[str]:
    return [t.id for t in sorted(tasks, key=lambda t: (t.created, t.id), reverse=True)]


async def walk(repository: TaskRepository, page_size: int, **filters: object) -> list[str]:
    """Every id the pages give, following tokens to the end."""
    seen: list[str] = []
    token = ""
    while True:
        page, token = await repository.list(
            page_size=page_size,
            page_token=token,
            **filters,  # type: ignore[arg-type]
        )
        assert len(page) <= page_size
        seen.extend(t.id for t in page)
        if not token:
            return seen
        assert len(page) == page_size, "only the last page is short"


async def test_pages_walk_every_task_once_newest_first(repository: TaskRepository) -> None:
    made = await make_tasks(repository)
    expected = newest_first(made)
    for page_size in (1, 7, 29, 30, 31):
        assert await walk(repository, page_size) == expected, f"page size {page_size}"
    page, token = await repository.list(page_size=0)
    assert ([t.id for t in page], token) == (expected, "")  # 0 means 50


async def test_filters_combine(repository: TaskRepository) -> None:
    made = await make_tasks(repository)
    cases: list[tuple[dict[str, object], list[Made]]] = [
        ({"states": [COMPLETED]}, [t for t in made if t.state == COMPLETED]),
        ({"states": [COMPLETED, FAILED]}, [t for t in made if t.state != PENDING]),
        ({"task_type": "batch_processing"}, [t for t in made if t.type == "batch_processing"]),
        ({"labels": {"team": "a"}}, [t for t in made if t.labels["team"] == "a"]),
        (
            {"labels": {"team": "a", "env": "prod"}},
            [t for t in made if t.labels == {"team": "a", "env": "prod"}],
        ),
        (
            {"states": [PENDING], "task_type": "text_processing", "labels": {"team": "b"}},
            [
                t
                for t in made
                if t.state == PENDING and t.type == "text_processing" and t.labels["team"] == "b"
            ],
        ),
        ({"labels": {"team": "nobody"}}, []),
        ({"task_type": "no_such_type"}, []),
    ]
    for filters, matching in cases:
        assert await walk(repository, 4, **filters) == newest_first(matching), filters


async def test_listed_tasks_leave_out_results(repository: TaskRepository) -> None:
    made = await make_tasks(repository, count=6)
    page, _ = await repository.list(states=[COMPLETED])
    assert {t.id for t in page} == {t.id for t in made if t.state == COMPLETED}
    assert all(not t.HasField("result") for t in page)
    full = await repository.get(page[0].id)
    assert full is not None and full.HasField("result")
    failed, _ = await repository.list(states=[FAILED])
    assert all(t.error.message == "bad" for t in failed)  # errors are small: kept


async def test_page_size_is_capped(repository: TaskRepository) -> None:
    created = at(0)
    await repository.apply(
        Stream().number(
            *(submitted(created=created + dt.timedelta(milliseconds=i)) for i in range(1005))
        )
    )
    page, token = await repository.list(page_size=5000)
    assert len(page) == MAX_PAGE_SIZE
    rest, last = await repository.list(page_size=5000, page_token=token)
    assert (len(rest), last) == (5, "")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "token",
    [
        "not a token",
        "%%%",
        "ab",
        "é",
        _b64(b"not json"),
        _b64(json.dumps([1, 2]).encode()),
        _b64(json.dumps({"a": 1}).encode()),
        _b64(json.dumps([9, 0, "01jn0000000000000000000001"]).encode()),  # another format
        _b64(json.dumps([1, "0", "01jn0000000000000000000001"]).encode()),
        _b64(json.dumps([1, 0, ""]).encode()),
        _b64(json.dumps([1, 10**30, "01jn0000000000000000000001"]).encode()),
    ],
)
async def test_a_malformed_page_token_is_invalid(repository: TaskRepository, token: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await repository.list(page_token=token)
    assert [v.field for v in caught.value.violations] == ["page_token"]


async def test_tokens_are_url_safe_and_round_trip(repository: TaskRepository) -> None:
    made = await make_tasks(repository, count=3)
    _, token = await repository.list(page_size=1)
    assert token and all(c.isalnum() or c in "-_" for c in token)
    newest = sorted(made, key=lambda t: (t.created, t.id))[-1]
    assert token == encode_token(Cursor(newest.created, newest.id))


async def test_creation_time_bounds_combine_with_every_filter(repository: TaskRepository) -> None:
    made = await make_tasks(repository)
    since, until = at(8), at(20)  # tasks 10 to 14 share at(10): inside, paged by id

    def within(t: Made) -> bool:
        return since <= t.created < until

    cases: list[tuple[dict[str, object], list[Made]]] = [
        ({}, [t for t in made if within(t)]),
        ({"states": [COMPLETED, FAILED]}, [t for t in made if within(t) and t.state != PENDING]),
        (
            {"task_type": "batch_processing"},
            [t for t in made if within(t) and t.type == "batch_processing"],
        ),
        ({"labels": {"team": "a"}}, [t for t in made if within(t) and t.labels["team"] == "a"]),
    ]
    for filters, matching in cases:
        assert matching, filters
        found = await walk(repository, 3, created_after=since, created_before=until, **filters)
        assert found == newest_first(matching), filters
    # Each bound alone: the start is inclusive, the end exclusive.
    after = await walk(repository, 50, created_after=at(10))
    assert after == newest_first([t for t in made if t.created >= at(10)])
    before = await walk(repository, 50, created_before=at(10))
    assert before == newest_first([t for t in made if t.created < at(10)])
