"""The ``conveyor`` command in-process against a real gRPC server playing the gateway."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import TypeAlias

import grpc
import pytest
from grpc_status import rpc_status

from conveyor import payloads
from conveyor.api.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from conveyor.cli import main
from conveyor.errors import FieldViolation, InvalidArgument, NotFound
from conveyor.server import status_for

Context: TypeAlias = "grpc.ServicerContext"
TASK_ID = "01jb0000000000000000000000"
IMAGE_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
State = tasks_pb2.TaskState


def image_task() -> tasks_pb2.Task:
    result = tasks_pb2.ImageProcessingResult(
        image=IMAGE_BYTES,
        format=tasks_pb2.IMAGE_FORMAT_PNG,
        width=640,
        height=480,
        mode="RGB",
        original_width=1280,
        original_height=960,
        original_format=tasks_pb2.IMAGE_FORMAT_JPEG,
        size_bytes=len(IMAGE_BYTES),
    )
    return tasks_pb2.Task(
        id=TASK_ID,
        type="image_processing",
        state=tasks_pb2.TASK_STATE_COMPLETED,
        attempt=1,
        max_attempts=3,
        version=4,
        result=tasks_pb2.TaskResult(image_processing=result),
    )


class FakeGateway(tasks_pb2_grpc.TaskServiceServicer):
    """Records requests and answers from a script, like the gateway would."""

    def __init__(self) -> None:
        self.submits: list[tasks_pb2.SubmitTaskRequest] = []
        self.gets: list[tasks_pb2.GetTaskRequest] = []
        self.lists: list[tasks_pb2.ListTasksRequest] = []
        self.watch_states: list[State] = []
        self.task = image_task()

    def SubmitTask(
        self, request: tasks_pb2.SubmitTaskRequest, context: Context
    ) -> tasks_pb2.SubmitTaskResponse:
        self.submits.append(request)
        if request.HasField("text_processing") and not request.text_processing.text:
            error = InvalidArgument.for_fields(
                [FieldViolation("text_processing.text", "must not be empty")]
            )
            context.abort_with_status(rpc_status.to_status(status_for(error)))
        kind = request.WhichOneof("input") or ""
        task_type = request.custom.type if kind == "custom" else kind
        task = tasks_pb2.Task(
            id=TASK_ID, type=task_type, state=tasks_pb2.TASK_STATE_PENDING, version=1
        )
        return tasks_pb2.SubmitTaskResponse(task=task)

    def GetTask(
        self, request: tasks_pb2.GetTaskRequest, context: Context
    ) -> tasks_pb2.GetTaskResponse:
        self.gets.append(request)
        if request.task_id != TASK_ID:
            context.abort_with_status(rpc_status.to_status(status_for(NotFound("no such task"))))
        return tasks_pb2.GetTaskResponse(task=self.task)

    def GetTaskPayload(
        self, request: tasks_pb2.GetTaskPayloadRequest, context: Context
    ) -> Iterator[tasks_pb2.GetTaskPayloadResponse]:
        data = self.task.result.SerializeToString()
        yield tasks_pb2.GetTaskPayloadResponse(payload=payloads.describe(data), data=data[:100])
        yield tasks_pb2.GetTaskPayloadResponse(data=data[100:])

    def ListTasks(
        self, request: tasks_pb2.ListTasksRequest, context: Context
    ) -> tasks_pb2.ListTasksResponse:
        self.lists.append(request)
        start = int(request.page_token or "0")
        ids = [f"01jb{n:022d}" for n in range(start, start + request.page_size)]
        tasks = [
            tasks_pb2.Task(id=i, type="batch_processing", state=tasks_pb2.TASK_STATE_RUNNING)
            for i in ids
        ]
        return tasks_pb2.ListTasksResponse(tasks=tasks, next_page_token=str(start + len(ids)))

    def WatchTask(
        self, request: tasks_pb2.WatchTaskRequest, context: Context
    ) -> Iterator[tasks_pb2.WatchTaskResponse]:
        for version, state in enumerate(self.watch_states, start=1):
            progress = tasks_pb2.TaskProgress(current=version, total=3, message="chunk")
            task = tasks_pb2.Task(
                id=TASK_ID,
                type="batch_processing",
                state=state,
                version=version,
                attempt=1,
                max_attempts=3,
                progress=progress,
            )
            if state == tasks_pb2.TASK_STATE_FAILED:
                task.error.CopyFrom(
                    tasks_pb2.TaskError(attempt=1, type="ValueError", message="bad item")
                )
            yield tasks_pb2.WatchTaskResponse(task=task)

    def CancelTask(
        self, request: tasks_pb2.CancelTaskRequest, context: Context
    ) -> tasks_pb2.CancelTaskResponse:
        task = tasks_pb2.Task(id=request.task_id, state=tasks_pb2.TASK_STATE_CANCELLED)
        return tasks_pb2.CancelTaskResponse(task=task)


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeGateway, str]]:
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps at 80 columns when not a terminal
    fake = FakeGateway()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    tasks_pb2_grpc.add_TaskServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield fake, f"127.0.0.1:{port}"
    server.stop(None)


def run(addr: str, *argv: str) -> int:
    return main(["--addr", addr, *argv])


def test_submit_prints_id_and_state(
    gateway: tuple[FakeGateway, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, addr = gateway
    code = run(
        addr,
        "submit",
        "text_processing",
        "--text",
        "Hello world",
        "--transform",
        "upper",
        "slug",
        "--priority",
        "high",
        "--label",
        "team=web",
        "--timeout",
        "2.5",
    )
    assert code == 0
    assert capsys.readouterr().out.split() == [TASK_ID, "pending", "text_processing"]
    [sent] = fake.submits
    assert list(sent.text_processing.transforms) == [
        tasks_pb2.TEXT_TRANSFORM_UPPER,
        tasks_pb2.TEXT_TRANSFORM_SLUG,
    ]
    assert sent.options.priority == tasks_pb2.TASK_PRIORITY_HIGH
    assert dict(sent.options.labels) == {"team": "web"}
    assert sent.options.timeout.ToNanoseconds() == 2_500_000_000


def test_json_output_parses(
    gateway: tuple[FakeGateway, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, addr = gateway
    assert run(addr, "submit", "send_email", "--payload", '{"to": "a@b.c"}', "--json") == 0
    submitted = json.loads(capsys.readouterr().out)
    assert submitted["task"] == {
        "id": TASK_ID,
        "type": "send_email",
        "state": "TASK_STATE_PENDING",
        "version": "1",
    }
    assert main(["--json", "--addr", addr, "get", TASK_ID]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["result"]["imageProcessing"]["width"] == 640


def test_invalid_argument_exits_2_naming_the_field(
    gateway: tuple[FakeGateway, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, addr = gateway
    assert run(addr, "submit", "text_processing", "--text", "") == 2
    captured = capsys.readouterr()
    assert captured.err == "error: invalid argument: text_processing.text: must not be empty\n"
    assert captured.out == ""


def test_flags_of_another_type_are_refused(
    gateway: tuple[FakeGateway, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, addr = gateway
    assert run(addr, "submit", "batch_processing", "--text", "x", "--items", "a") == 2
    assert capsys.readouterr().err == "error: --text does not apply to batch_processing\n"
    assert fake.submits == []


def test_a_custom_payload_goes_as_json_text_with_its_integers_exact(
    gateway: tuple[FakeGateway, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, addr = gateway
    assert run(addr, "submit", "report", "--payload", '{"id": 9007199254740993}') == 0
    assert [sent.custom.json for sent in fake.submits] == ['{"id":9007199254740993}']
    assert run(addr, "submit", "report", "--payload", '{"x": [NaN]}') == 2
    err = capsys.readouterr().err
    assert err == 'error: payload["x"][0]: nan is not a JSON number (NaN and infinities are not)\n'
    assert len(fake.submits) == 1


def test_not_found_exits_1_with_one_line(
    gateway: tuple[FakeGateway, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, addr = gateway
    assert run(addr, "get", "01jbzzzzzzzzzzzzzzzzzzzzzz") == 1
    assert capsys.readouterr().err == "error: not found: no such task\n"


def test_get_renders_an_image_result_without_bytes(
    gateway: tuple[FakeGateway, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, addr = gateway
    assert run(addr, "get", TASK_ID) == 0
    out = capsys.readouterr().out
    assert "640x480 PNG (RGB), 10,248 bytes" in out
    assert "1280x960 JPEG" in out
    assert "completed" in out and "1/3" in out
    assert base64.b64encode(IMAGE_BYTES)[:40].decode() not in out
    assert "PNG\r\n" not in out and "\\x89" not in out
    assert fake.gets[0].omit_payloads


def test_get_input_asks_for_the_full_view_and_shows_the_input_and_trace_id(
    gateway: tuple[FakeGateway, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, addr = gateway
    fake.task = tasks_pb2.Task(
        id=TASK_ID,
        type="text_processing",
        state=tasks_pb2.TASK_STATE_COMPLETED,
        version=3,
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        input=tasks_pb2.TaskInput(
            text_processing=tasks_pb2.TextProcessingInput(text="count these words")
        ),
    )
    assert run(addr, "get", TASK_ID, "--input") == 0
    out = capsys.readouterr().out
    assert "count these words" in out
    assert "4bf92f3577b34da6a3ce929d0e0e4736" in out
    assert fake.gets[-1].view == tasks_pb2.TASK_VIEW_FULL
    assert run(addr, "get", TASK_ID) == 0
    assert fake.gets[-1].view == tasks_pb2.TASK_VIEW_BASIC


def test_get_shows_the_end_of_the_errors_traceback_and_all_of_it_when_asked(
    gateway: tuple[FakeGateway, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, addr = gateway
    frames = [f'  File "/app/rows.py", line {n}, in level_{n}' for n in range(1, 30)]
    traceback = "\n".join(["Traceback (most recent call last):", *frames])
    traceback += "\nValueError: bad \x1b[2Jrow [red]3[/red]\n"
    error = tasks_pb2.TaskError(
        attempt=2, type="ValueError", message="bad row", traceback=traceback
    )
    fake.task = tasks_pb2.Task(
        id=TASK_ID, type="custom", state=tasks_pb2.TASK_STATE_FAILED, attempt=2, error=error
    )
    assert run(addr, "get", TASK_ID) == 0
    out = capsys.readouterr().out
    assert "traceback (19 lines before these: get --traceback shows all)" in out
    assert "in level_19\n" in out and "in level_18\n" not in out
    assert "Traceback (most recent call last)" not in out
    # Markup is shown as written; a terminal escape sequence is not sent.
    assert out.endswith("ValueError: bad \ufffd[2Jrow [red]3[/red]\n") and "\x1b" not in out
    assert run(addr, "get", TASK_ID, "--traceback") == 0
    whole = capsys.readouterr().out
    assert "Traceback (most recent call last):\n" in whole and "in level_1\n" in whole
    assert "lines before these" not in whole
    assert run(addr, "--json", "get", TASK_ID) == 0
    assert json.loads(capsys.readouterr().out)["error"]["traceback"] == traceback


def test_get_output_writes_the_image(
    gateway: tuple[FakeGateway, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, addr = gateway
    target = tmp_path / "out.png"
    assert run(addr, "get", TASK_ID, "--output", str(target)) == 0
    assert target.read_bytes() == IMAGE_BYTES
    assert "wrote 10,248 bytes" in capsys.readouterr().err


def test_get_of_an_abridged_result_says_where_the_rest_is(
    gateway: tuple[FakeGateway, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, addr = gateway
    fake.task.result.payload.CopyFrom(payloads.describe(b"x" * 300_000, "t/result/1"))
    assert run(addr, "get", TASK_ID) == 0
    assert "300,000 bytes, not all shown: get --output FILE" in capsys.readouterr().out


def test_get_output_writes_any_other_result_as_json(
    gateway: tuple[FakeGateway, str], tmp_path: Path
) -> None:
    fake, addr = gateway
    fake.task = tasks_pb2.Task(
        id=TASK_ID,
        type="text_processing",
        state=tasks_pb2.TASK_STATE_COMPLETED,
        result=tasks_pb2.TaskResult(text_processing=tasks_pb2.TextProcessingResult(words=4)),
    )
    target = tmp_path / "out.json"
    assert run(addr, "get", TASK_ID, "--output", str(target)) == 0
    assert json.loads(target.read_text()) == {"textProcessing": {"words": 4}}


def test_image_operations_keep_command_line_order(
    gateway: tuple[FakeGateway, str], tmp_path: Path
) -> None:
    fake, addr = gateway
    source = tmp_path / "in.png"
    source.write_bytes(IMAGE_BYTES)
    argv = ["submit", "image_processing", "--image", str(source), "--rotate", "90"]
    assert run(addr, *argv, "--grayscale", "--thumbnail", "64x32", "--format", "webp") == 0
    sent = fake.submits[0].image_processing
    assert [op.WhichOneof("operation") for op in sent.operations] == [
        "rotate",
        "grayscale",
        "thumbnail",
    ]
    assert sent.operations[2].thumbnail.max_height == 32
    assert sent.output_format == tasks_pb2.IMAGE_FORMAT_WEBP
    assert sent.image == IMAGE_BYTES


@pytest.mark.parametrize(
    ("final", "code"), [(tasks_pb2.TASK_STATE_COMPLETED, 0), (tasks_pb2.TASK_STATE_FAILED, 1)]
)
def test_watch_exit_status_follows_the_task(
    gateway: tuple[FakeGateway, str], capsys: pytest.CaptureFixture[str], final: State, code: int
) -> None:
    fake, addr = gateway
    fake.watch_states = [tasks_pb2.TASK_STATE_PENDING, tasks_pb2.TASK_STATE_RUNNING, final]
    assert run(addr, "watch", TASK_ID) == code
    captured = capsys.readouterr()
    for state in ("pending", "running", "completed" if code == 0 else "failed"):
        assert f"{TASK_ID} {state} attempt 1/3" in captured.out
    assert ("failed: attempt 1: ValueError: bad item" in captured.out) == (code == 1)


def test_watch_json_lines(
    gateway: tuple[FakeGateway, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, addr = gateway
    fake.watch_states = [tasks_pb2.TASK_STATE_RUNNING, tasks_pb2.TASK_STATE_COMPLETED]
    assert run(addr, "--json", "watch", TASK_ID) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["state"] for line in lines] == ["TASK_STATE_RUNNING", "TASK_STATE_COMPLETED"]


def test_list_pages_up_to_the_limit(
    gateway: tuple[FakeGateway, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, addr = gateway
    assert run(addr, "list", "--state", "running", "--label", "a=b", "--limit", "3") == 0
    captured = capsys.readouterr()
    assert captured.out.count("01jb") == 3
    assert "--page-token 3" in captured.err
    assert list(fake.lists[0].states) == [tasks_pb2.TASK_STATE_RUNNING]
    assert dict(fake.lists[0].labels) == {"a": "b"}


def test_cancel_prints_the_new_state(
    gateway: tuple[FakeGateway, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, addr = gateway
    assert run(addr, "cancel", TASK_ID) == 0
    assert capsys.readouterr().out.split() == [TASK_ID, "cancelled"]


def test_unreachable_gateway_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--addr", "127.0.0.1:1", "cancel", TASK_ID]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unavailable: ") and err.count("\n") == 1


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["submit"]) == 2
    assert main(["list", "--state", "sleeping"]) == 2
    assert main(["submit", "x", "--label", "novalue"]) == 2
    assert "invalid choice: 'sleeping'" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "conveyor submit text_processing" in capsys.readouterr().out


ODD_RESULT = (
    '{"big":9007199254740993,"huge":1180591620717411303424,"deep":' + "[" * 30 + "]" * 30 + "}"
)
"""A custom result with integers past 2**53 (and past 64 bits: any JSON) and deep nesting."""


def odd_custom_task() -> tasks_pb2.Task:
    """A completed custom task whose result is JSON text."""
    return tasks_pb2.Task(
        id=TASK_ID,
        type="report",
        state=tasks_pb2.TASK_STATE_COMPLETED,
        attempt=1,
        version=3,
        result=tasks_pb2.TaskResult(custom=tasks_pb2.CustomTaskResult(json=ODD_RESULT)),
    )


@pytest.mark.parametrize("as_json", [True, False])
def test_get_shows_a_custom_result_with_its_integers_exact(
    gateway: tuple[FakeGateway, str], capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    fake, addr = gateway
    fake.task = odd_custom_task()
    assert run(addr, *(["--json"] if as_json else []), "get", TASK_ID) == 0
    out = capsys.readouterr().out
    if as_json:
        assert json.loads(out)["result"]["custom"]["json"] == ODD_RESULT
    else:
        assert '{"big":9007199254740993,"huge":1180591620717411303424,' in out
