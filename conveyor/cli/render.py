"""How the CLI shows tasks: rich tables for people, protobuf JSON for programs.

Payloads are summarised, never dumped: an image result shows its size and format, not
its bytes, so a terminal never fills with base64.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.auth.principal import DEFAULT_NAMESPACE
from conveyor.client import AsyncClient
from conveyor.jsonlike import printable_copy
from conveyor.tasks import STATE_NAMES, from_timestamp, is_terminal, seconds

_STATE_NAMES: dict[int, str] = {int(number): name for number, name in STATE_NAMES.items()}
_STATE_STYLES: dict[int, str] = {
    tasks_pb2.TASK_STATE_COMPLETED: "green",
    tasks_pb2.TASK_STATE_FAILED: "red",
    tasks_pb2.TASK_STATE_CANCELLED: "yellow",
    tasks_pb2.TASK_STATE_RETRYING: "magenta",
    tasks_pb2.TASK_STATE_RUNNING: "cyan",
}
_TIMES = {
    "create_time": "created",
    "update_time": "updated",
    "start_time": "started",
    "end_time": "ended",
    "run_at": "run at",
    "next_attempt_time": "next attempt",
}
_MAX_SHOWN = 20
"""Rows of repeated results (batch items, transforms) a table shows before eliding."""
TRACEBACK_LINES = 12
"""Lines of the error's traceback ``conveyor get`` shows, the last ones (where the
exception and the innermost frames are); ``--traceback`` shows all."""
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Characters a worker's text could steer a terminal with (escape sequences)."""


def state_name(state: int) -> str:
    return _STATE_NAMES.get(state, f"unknown({state})")


def _state(state: int) -> str:
    return f"[{_STATE_STYLES.get(state, 'white')}]{state_name(state)}[/]"


def _clip(text: str, limit: int = 200) -> str:
    one_line = " ".join(text.split())
    return escape(one_line if len(one_line) <= limit else one_line[: limit - 1] + "…")


def _enum(enum: Any, value: int, prefix: str) -> str:
    try:
        return str(enum.Name(value)).removeprefix(prefix).lower()
    except ValueError:
        return str(value)


def _attempts(task: tasks_pb2.Task) -> str:
    return f"{task.attempt}/{task.max_attempts}" if task.max_attempts else str(task.attempt)


def to_dict(message: Message) -> dict[str, Any]:
    """The canonical proto3 JSON mapping of a message, as grpcurl and buf curl print it;
    NaN and infinities in a Struct, which the mapping refuses, as strings."""
    try:
        return json_format.MessageToDict(message)
    except (ValueError, json_format.Error):
        return json_format.MessageToDict(printable_copy(message))


def result_rows(result: tasks_pb2.TaskResult) -> list[tuple[str, str]]:
    """(label, value) rows summarising a typed result, and where an abridged one is whole."""
    rows = _typed_rows(result)
    if result.HasField("payload"):
        size = result.payload.size_bytes
        rows.append(("full result", f"{size:,} bytes, not all shown: get --output FILE"))
    return rows


def _typed_rows(result: tasks_pb2.TaskResult) -> list[tuple[str, str]]:
    which = result.WhichOneof("result")
    if which == "text_processing":
        r = result.text_processing
        rows = [
            (
                "counts",
                f"{r.characters:,} characters, {r.words:,} words "
                f"({r.unique_words:,} unique), {r.sentences:,} sentences, {r.lines:,} lines, "
                f"{r.paragraphs:,} paragraphs",
            ),
            ("average word", f"{r.average_word_length:.2f} characters"),
            ("top words", ", ".join(f"{escape(w.word)} ({w.count})" for w in r.top_words)),
        ]
        rows += [
            (_enum(tasks_pb2.TextTransform, t.transform, "TEXT_TRANSFORM_"), _clip(t.text))
            for t in r.transforms[:_MAX_SHOWN]
        ]
        return rows
    if which == "ai_summarization":
        s = result.ai_summarization
        return [
            ("summary", _clip(s.summary, 1000)),
            ("sentences", f"{len(s.sentences)} of {s.original_sentence_count}"),
            ("compression", f"{s.compression_ratio:.1%}"),
        ]
    if which == "batch_processing":
        b = result.batch_processing
        rows = [
            (
                "items",
                f"{b.total:,} ({b.succeeded:,} ok, {b.failed:,} failed) in {b.chunks:,} chunks",
            )
        ]
        for item in b.items[:_MAX_SHOWN]:
            rows.append(
                (f"[{item.index}]", _clip(item.output if item.ok else f"error: {item.error}"))
            )
        if len(b.items) > _MAX_SHOWN:
            rows.append(("…", f"{len(b.items) - _MAX_SHOWN:,} more (use --json)"))
        return rows
    if which == "image_processing":
        i = result.image_processing
        fmt = _enum(tasks_pb2.ImageFormat, i.format, "IMAGE_FORMAT_").upper()
        original = _enum(tasks_pb2.ImageFormat, i.original_format, "IMAGE_FORMAT_").upper()
        size = i.size_bytes or len(i.image)
        return [
            ("image", f"{i.width}x{i.height} {fmt} ({i.mode}), {size:,} bytes"),
            ("original", f"{i.original_width}x{i.original_height} {original}"),
        ]
    if which == "custom":
        return [("result", _clip(result.custom.json or "{}", 1000))]
    return []


def _optional_rows(task: tasks_pb2.Task) -> list[tuple[str, str]]:
    """The rows of ``conveyor get`` shown only when the task has them."""
    rows = []
    if task.labels:
        rows.append(
            ("labels", escape(", ".join(f"{k}={v}" for k, v in sorted(task.labels.items()))))
        )
    for name, value in (
        ("idempotency key", task.idempotency_key),
        ("schedule", task.schedule_id),
        ("worker", task.worker_id),
        ("trace id", task.trace_id),
    ):
        if value:
            rows.append((name, escape(value)))
    if task.HasField("timeout"):
        rows.append(("timeout", f"{seconds(task.timeout):g}s"))
    rows.extend(
        (name, _time(task, field)) for field, name in _TIMES.items() if task.HasField(field)
    )
    if task.HasField("input"):
        rows.append(("input", _input_text(task.input)))
    return rows


def _input_text(task_input: tasks_pb2.TaskInput) -> str:
    """The input as its JSON (custom input as the JSON object it carries), clipped."""
    kind = task_input.WhichOneof("input")
    if kind == "custom" and task_input.custom.json:
        return _clip(task_input.custom.json, 2000)
    fields = to_dict(getattr(task_input, kind)) if kind else {}
    if task_input.HasField("payload"):
        fields["abridged"] = f"{task_input.payload.size_bytes:,} bytes in the object store"
    return _clip(json.dumps(fields, ensure_ascii=False), 2000)


def _error_text(error: tasks_pb2.TaskError) -> str:
    when = f" at {_time(error)}" if error.HasField("time") else ""
    message = _clip(_plain(error.message), 500)
    return f"attempt {error.attempt}{when}: {escape(_plain(error.type))}: {message}"


def _plain(text: str) -> str:
    """The text without terminal control characters (newlines and tabs kept)."""
    return _CONTROL.sub("\ufffd", text)


def traceback_lines(traceback: str, whole: bool) -> tuple[list[str], int]:
    """The lines of a traceback to show (the last TRACEBACK_LINES unless ``whole``), and
    how many before them are left out."""
    lines = _plain(traceback).rstrip("\n").split("\n")
    if whole or len(lines) <= TRACEBACK_LINES:
        return lines, 0
    return lines[-TRACEBACK_LINES:], len(lines) - TRACEBACK_LINES


def _time(message: Any, field: str = "time", layout: str = "%Y-%m-%d %H:%M:%S %Z") -> str:
    """A timestamp field in local time, as the person at the terminal reads clocks."""
    return from_timestamp(getattr(message, field)).astimezone().strftime(layout)


class Output:
    """Writes command results to stdout as tables (or JSON) and notes to stderr."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        # Made per command, on the current sys.stdout, so redirection and capture work.
        self.console = Console(file=sys.stdout, highlight=False)
        self.err = Console(file=sys.stderr, highlight=False)

    def json(self, message: Message | dict[str, Any], *, lines: bool = False) -> None:
        data = message if isinstance(message, dict) else to_dict(message)
        print(json.dumps(data, separators=(",", ":")) if lines else json.dumps(data, indent=2))

    def note(self, text: str) -> None:
        self.err.print(escape(text))

    def submitted(self, response: tasks_pb2.SubmitTaskResponse, quiet_json: bool = False) -> None:
        if self.as_json:
            if not quiet_json:
                self.json(response)
            return
        task = response.task
        dedup = " (deduplicated: same idempotency key as an earlier submit)"
        self.console.print(
            f"{task.id} {_state(task.state)} {escape(task.type)}"
            + (dedup if response.deduplicated else "")
        )

    def changed(self, task: tasks_pb2.Task) -> None:
        if self.as_json:
            self.json(task)
            return
        extra = (
            ", cancel requested" if task.cancel_requested and not is_terminal(task.state) else ""
        )
        self.console.print(f"{task.id} {_state(task.state)}{extra}")

    def task(self, task: tasks_pb2.Task, whole_traceback: bool = False) -> None:
        """The task as a table, then its error's traceback (its end unless
        ``whole_traceback``)."""
        if self.as_json:
            self.json(task)
            return
        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold", no_wrap=True)
        table.add_column(overflow="fold")
        table.add_row("id", task.id)
        # A store from before namespaces sends none: its tasks are the default namespace's.
        table.add_row("namespace", escape(task.namespace or DEFAULT_NAMESPACE))
        table.add_row("type", escape(task.type))
        table.add_row(
            "state", _state(task.state) + (" (cancel requested)" if task.cancel_requested else "")
        )
        table.add_row("attempt", _attempts(task))
        priority = _enum(tasks_pb2.TaskPriority, task.priority, "TASK_PRIORITY_")
        table.add_row("priority", "normal" if priority == "unspecified" else priority)
        for name, value in _optional_rows(task):
            table.add_row(name, value)
        if task.HasField("progress") and not is_terminal(task.state):
            table.add_row("progress", self._progress_text(task.progress))
        for label, value in result_rows(task.result):
            table.add_row(label, value)
        if task.HasField("error"):
            table.add_row("[red]error[/]", _error_text(task.error))
        for error in task.attempt_errors:
            table.add_row("failed attempt", _error_text(error))
        table.add_row("version", str(task.version))
        self.console.print(table)
        if task.error.traceback:
            self._traceback(task.error.traceback, whole_traceback)

    def _traceback(self, traceback: str, whole: bool) -> None:
        lines, left_out = traceback_lines(traceback, whole)
        more = f" ({left_out} lines before these: get --traceback shows all)" if left_out else ""
        self.console.print(f"[bold]traceback[/]{more}")
        # Soft wrap: the terminal folds long lines, so a copied traceback stays whole.
        self.console.print(escape("\n".join(lines)), soft_wrap=True)

    @staticmethod
    def _progress_text(p: tasks_pb2.TaskProgress) -> str:
        amount = f"{p.current:,}/{p.total:,}" if p.total else f"{p.current:,}"
        return amount + (f" {escape(p.message)}" if p.message else "")

    def task_list(self, tasks: list[tasks_pb2.Task], next_page_token: str) -> None:
        if self.as_json:
            page = tasks_pb2.ListTasksResponse(tasks=tasks, next_page_token=next_page_token)
            self.json(page)
            return
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        # Ids, types and states are what a reader copies or scans for: never cut them,
        # fold labels instead.
        table.add_column("ID", no_wrap=True, min_width=26)
        table.add_column(
            "TYPE", no_wrap=True, min_width=max((len(t.type) for t in tasks), default=4)
        )
        table.add_column("STATE", no_wrap=True, min_width=9)
        table.add_column("ATTEMPT", no_wrap=True)
        table.add_column("CREATED", no_wrap=True)
        table.add_column("LABELS", overflow="fold")
        for t in tasks:
            created = _time(t, "create_time", "%m-%d %H:%M:%S") if t.HasField("create_time") else ""
            labels = ", ".join(f"{k}={v}" for k, v in sorted(t.labels.items()))
            table.add_row(
                t.id, escape(t.type), _state(t.state), _attempts(t), created, escape(labels)
            )
        self.console.print(table)
        if next_page_token:
            self.note(f"more tasks: --page-token {next_page_token}")


async def follow(client: AsyncClient, out: Output, task_id: str) -> int:
    """Shows a task live until it ends: 0 when it completed, 1 otherwise."""
    final = tasks_pb2.Task()
    if out.as_json:
        async for final in client.watch(task_id):
            out.json(final, lines=True)
        return 0 if final.state == tasks_pb2.TASK_STATE_COMPLETED else 1
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[amount]}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[message]}"),
    )
    with Progress(*columns, console=out.console, transient=False) as progress:
        bar = progress.add_task(task_id, total=None, amount="", message="")
        last_state = -1
        async for final in client.watch(task_id):
            p = final.progress
            if final.state != last_state:
                last_state = final.state
                progress.console.print(
                    f"{task_id} {_state(final.state)} attempt {_attempts(final)}"
                )
            done = final.state == tasks_pb2.TASK_STATE_COMPLETED
            total = p.total or (1 if done else None)
            progress.update(
                bar,
                description=f"{_state(final.state)} {_attempts(final)}",
                total=total,
                completed=(total or 0) if done else p.current,
                amount=f"{p.current:,}/{p.total:,}" if p.total else "",
                message=escape(p.message),
            )
    if final.HasField("error") and final.state != tasks_pb2.TASK_STATE_COMPLETED:
        out.console.print(f"[red]{state_name(final.state)}[/]: {_error_text(final.error)}")
    return 0 if final.state == tasks_pb2.TASK_STATE_COMPLETED else 1
