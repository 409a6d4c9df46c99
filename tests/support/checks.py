"""Load generation and the audit every fault test ends with.

The audit checks three sources against each other:

- the public API (``ListTasks`` through the gateway): every acknowledged task is there and
  finished;
- the store's database, read directly: each task's history has versions 1..n without a
  gap or a repeat, COMPLETED at most once, and no state after a terminal one but a
  re-drive;
- the EVENTS stream, replayed from the first event through the store's own pure state
  machine: the result must equal what the store wrote, task by task (state, attempt,
  version). A batch applied twice, or an event skipped across a crash, shows up as a
  different version.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psycopg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy.engine import make_url

from conveyor import messages, subjects
from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.api.tasks.v1 import tasks_pb2_grpc
from conveyor.tasks import is_terminal
from store.convert import events_from_proto
from store.transitions import Kind, Snapshot, transition
from tests.support.nats_client import jetstream
from tests.support.requests import text_request

CALL_TIMEOUT = 10.0
PAGE = 1000


@dataclass
class Load:
    """Submits batches from a few concurrent loops until stopped; remembers what was
    acknowledged (the call returned OK) and how the other calls failed."""

    stub: tasks_pb2_grpc.TaskServiceStub
    batch: int = 10
    loops: int = 2
    pause: float = 0.05
    make: Callable[[int], S.SubmitTaskRequest] = text_request
    accepted: list[str] = field(default_factory=list)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _loops: list[asyncio.Task[None]] = field(default_factory=list)
    _sent: int = 0

    def start(self) -> Load:
        self._loops = [asyncio.create_task(self._run()) for _ in range(self.loops)]
        return self

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._loops)

    async def until(self, count: int, timeout: float = 60.0) -> None:
        """Waits until at least ``count`` tasks are acknowledged."""
        async with asyncio.timeout(timeout):
            while len(self.accepted) < count:
                await asyncio.sleep(0.05)

    async def _run(self) -> None:
        while not self._stop.is_set():
            requests = [self.make(self._sent + i) for i in range(self.batch)]
            self._sent += self.batch
            try:
                response = await self.stub.SubmitTasks(
                    S.SubmitTasksRequest(requests=requests), timeout=CALL_TIMEOUT
                )
            except grpc.aio.AioRpcError as err:
                self.errors[err.code().name] += 1
                await asyncio.sleep(0.1)
                continue
            self.accepted.extend(task.id for task in response.tasks)
            await asyncio.sleep(self.pause)


async def list_all(
    stub: tasks_pb2_grpc.TaskServiceStub, states: Sequence[S.TaskState] = ()
) -> list[S.Task]:
    """Every task the store holds (with the given states), page by page."""
    found: list[S.Task] = []
    token = ""
    while True:
        page = await stub.ListTasks(
            S.ListTasksRequest(states=states, page_size=PAGE, page_token=token),
            timeout=30,
        )
        found.extend(page.tasks)
        token = page.next_page_token
        if not token:
            return found


UNFINISHED: list[S.TaskState] = [
    S.TASK_STATE_PENDING,
    S.TASK_STATE_SCHEDULED,
    S.TASK_STATE_RUNNING,
    S.TASK_STATE_RETRYING,
]


async def wait_finished(
    stub: tasks_pb2_grpc.TaskServiceStub, ids: list[str], timeout: float
) -> dict[str, S.Task]:
    """Polls ListTasks until every task of ``ids`` is finished; every task by id."""
    wanted = set(ids)
    deadline = time.monotonic() + timeout
    tasks: dict[str, S.Task] = {}
    while True:
        try:
            # Only the unfinished ones while there are some: listing every task of a big
            # run twice a second would slow down the system under test.
            unfinished = [t for t in await list_all(stub, UNFINISHED) if t.id in wanted]
            if not unfinished:
                tasks = {t.id: t for t in await list_all(stub)}
        except grpc.aio.AioRpcError:
            unfinished, tasks = [], {}
        missing = wanted - tasks.keys()
        unfinished += [t for i, t in tasks.items() if i in wanted and not is_terminal(t.state)]
        if tasks and not missing and not unfinished:
            return tasks
        if time.monotonic() > deadline:
            states = collections.Counter(S.TaskState.Name(t.state) for t in unfinished)
            sample = [(t.id, S.TaskState.Name(t.state), t.attempt) for t in unfinished[:5]]
            raise AssertionError(
                f"not finished after {timeout:.0f}s: {len(missing)} acknowledged tasks unknown "
                f"to the store (e.g. {sorted(missing)[:3]}), {len(unfinished)} unfinished "
                f"{dict(states)}, e.g. {sample}"
            )
        await asyncio.sleep(1.0)


@dataclass
class StoredTask:
    """A task as the store's database holds it, with its whole history."""

    state: int
    attempt: int
    version: int
    history: list[S.Task]


TASKS_QUERY = "SELECT id, state, attempt, version FROM tasks"
HISTORY_QUERY = "SELECT task_id, snapshot FROM task_history ORDER BY task_id, version"
CURSOR_QUERY = "SELECT applied_sequence FROM store_cursor"


def read_database(database: Path | str) -> tuple[int, dict[str, StoredTask]]:
    """The store's applied sequence and every task, read in one consistent snapshot from
    its SQLite file (a Path) or its PostgreSQL database (a URL)."""
    if isinstance(database, Path):
        with contextlib.closing(
            sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
        ) as db:
            db.execute("BEGIN")
            return _read(db.execute)
    url = make_url(database).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as pg, pg.transaction():
        pg.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return _read(pg.execute)


def _read(execute: Callable[[str], Any]) -> tuple[int, dict[str, StoredTask]]:
    applied = int(execute(CURSOR_QUERY).fetchone()[0])
    stored = {
        row[0]: StoredTask(row[1], row[2], row[3], []) for row in execute(TASKS_QUERY).fetchall()
    }
    for task_id, snapshot in execute(HISTORY_QUERY).fetchall():
        stored[task_id].history.append(S.Task.FromString(bytes(snapshot)))
    return applied, stored


async def read_events(nats_url: str, last: int) -> list[events_pb2.TaskEvent]:
    """The EVENTS stream from its first message up to sequence ``last``, in order."""
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, inactive_threshold=60.0
    )
    events: list[events_pb2.TaskEvent] = []
    async with jetstream(nats_url) as js:
        sub = await js.pull_subscribe(
            f"{subjects.EVENTS_PREFIX}.>", stream=subjects.STREAM_EVENTS, config=config
        )
        sequence = 0
        while sequence < last:
            for msg in await sub.fetch(1000, timeout=10):
                sequence = msg.metadata.sequence.stream
                if sequence <= last:
                    events.extend(messages.events_of(msg.headers, msg.data))
        await sub.unsubscribe()
    return events


def replay(
    events: list[events_pb2.TaskEvent],
) -> tuple[dict[str, Snapshot], dict[str, list[events_pb2.TaskEvent]]]:
    """Every task as the state machine makes it from the events, and the events by task."""
    tasks: dict[str, Snapshot] = {}
    by_task: dict[str, list[events_pb2.TaskEvent]] = collections.defaultdict(list)
    # A worker's event can precede its task's `submitted` (two streams, no order between
    # them): it waits for the task, and is applied right after it is created.
    early: dict[str, list[events_pb2.TaskEvent]] = collections.defaultdict(list)

    def apply(message: events_pb2.TaskEvent) -> None:
        for event in events_from_proto(message):
            known = event.task_id in tasks
            if not known and event.kind is not Kind.SUBMITTED:
                early[event.task_id].append(message)
                return
            changed = transition(tasks.get(event.task_id), event)
            if changed is not None:
                tasks[changed.id] = changed
                if not known:
                    for waiting in early.pop(changed.id, []):
                        apply(waiting)

    for message in events:
        by_task[message.task_id].append(message)
        apply(message)
    return tasks, by_task


def check_history(task_id: str, states: list[int], current: int) -> None:
    """A task's states, version by version: it ends where the task is now, COMPLETED at
    most once, and nothing follows a terminal state but an explicit re-drive (PENDING)."""
    assert states[-1] == current, (task_id, states, current)
    assert states.count(S.TASK_STATE_COMPLETED) <= 1, (task_id, states)
    for before, after in itertools.pairwise(states):
        assert not is_terminal(before) or after == S.TASK_STATE_PENDING, (task_id, states)


@dataclass
class Audit:
    """What the audit found: the tasks through the API, and each task's events."""

    tasks: dict[str, S.Task]
    events: dict[str, list[events_pb2.TaskEvent]]
    stored: dict[str, StoredTask]

    def kinds(self, task_id: str) -> list[tuple[str, int, str]]:
        """(kind, attempt, worker) of each event of the task, in stream order."""
        return [(e.WhichOneof("kind") or "", e.attempt, e.worker_id) for e in self.events[task_id]]


async def audit(
    stub: tasks_pb2_grpc.TaskServiceStub,
    database: Path | str,
    nats_url: str,
    accepted: list[str],
    timeout: float = 90.0,
) -> Audit:
    """Waits for every acknowledged task to finish, then checks that each one COMPLETED
    exactly once, that the store's history is whole, and that the store's state is exactly
    the event log applied once (see the module docstring)."""
    assert len(set(accepted)) == len(accepted), "a task id was acknowledged twice"
    tasks = await wait_finished(stub, accepted, timeout)
    for task_id in accepted:
        task = tasks[task_id]
        assert task.state == S.TASK_STATE_COMPLETED, (
            task_id,
            S.TaskState.Name(task.state),
            task.error,
        )
        assert task.attempt >= 1, task

    applied, stored = await asyncio.to_thread(read_database, database)
    for task_id, row in stored.items():
        versions = [snapshot.version for snapshot in row.history]
        assert versions == list(range(1, row.version + 1)), (task_id, versions, row.version)
        check_history(task_id, [snapshot.state for snapshot in row.history], row.state)

    replayed, by_task = replay(await read_events(nats_url, applied))
    assert replayed.keys() == stored.keys()
    differences = [
        (task_id, (row.state, row.attempt, row.version), (r.state, r.attempt, r.version))
        for task_id, row in stored.items()
        if (r := replayed[task_id])
        and (row.state, row.attempt, row.version) != (r.state, r.attempt, r.version)
    ]
    assert not differences, f"store differs from the event log replayed: {differences[:5]}"
    return Audit(tasks, by_task, stored)
