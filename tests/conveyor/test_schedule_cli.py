"""``conveyor schedule ...``, ``pause``, ``resume``, ``queues`` and ``limit`` in-process
against fake ScheduleService and QueueService servicers on a real gRPC server."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from conveyor.api.queues.v1 import queues_pb2
from conveyor.api.schedules.v1 import schedules_pb2
from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.cli import main
from conveyor.tasks import from_timestamp
from tests.conveyor.control_fakes import NEXT_TICK, TASK_ID, Gateway, serve


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps at 80 columns when not a terminal
    with serve() as fakes:
        yield fakes


def run(gateway: Gateway, *argv: str) -> int:
    return main(["--addr", gateway.addr, *argv])


def row(out: str, first: str) -> list[str]:
    """The cells (two or more spaces apart) of the one table row whose first is ``first``."""
    rows = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if line.strip()]
    [found] = [cells for cells in rows if cells[0] == first]
    return found


def created(gateway: Gateway) -> schedules_pb2.CreateScheduleRequest:
    [request] = [
        r for r in gateway.schedules.requests if isinstance(r, schedules_pb2.CreateScheduleRequest)
    ]
    return request


# --- schedule create ------------------------------------------------------------------------


def test_create_cron_sends_spec_and_template(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(
        gateway,
        "schedule",
        "create",
        "news",
        "--cron",
        "30 6 * * mon-fri",
        "--tz",
        "Europe/Paris",
        "--overlap",
        "allow",
        "--catch-up",
        "run_once",
        "--description",
        "Weekday news",
        "text_processing",
        "--text",
        "headlines",
        "--transform",
        "upper",
        "--priority",
        "high",
        "--label",
        "team=web",
        "--max-attempts",
        "2",
    )
    assert code == 0
    request = created(gateway)
    spec = request.spec
    assert request.schedule_id == "news"
    assert spec.WhichOneof("timing") == "cron"
    assert (spec.cron, spec.time_zone) == ("30 6 * * mon-fri", "Europe/Paris")
    assert spec.overlap == schedules_pb2.OVERLAP_POLICY_ALLOW
    assert spec.catch_up == schedules_pb2.CATCH_UP_POLICY_RUN_ONCE
    assert spec.description == "Weekday news"
    assert spec.task.text_processing.text == "headlines"
    assert list(spec.task.text_processing.transforms) == [tasks_pb2.TEXT_TRANSFORM_UPPER]
    assert spec.task.options.priority == tasks_pb2.TASK_PRIORITY_HIGH
    assert dict(spec.task.options.labels) == {"team": "web"}
    assert spec.task.options.max_attempts == 2
    out = capsys.readouterr().out
    assert row(out, "timing") == ["timing", "cron 30 6 * * mon-fri (Europe/Paris)"]
    assert row(out, "overlap") == ["overlap", "allow"]
    assert row(out, "catch-up") == ["catch-up", "run_once"]
    assert row(out, "task") == ["task", "text_processing"]
    assert row(out, "task options") == [
        "task options",
        "priority high; max attempts 2; labels team=web",
    ]
    local = from_timestamp(NEXT_TICK).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    assert row(out, "next tick") == ["next tick", local]


def test_create_interval_with_a_custom_type(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["schedule", "create", "cleanup2", "--every", "90", "purge_old"]
    assert run(gateway, *argv, "--payload", '{"days": 30}', "--delay", "5") == 0
    spec = created(gateway).spec
    assert spec.WhichOneof("timing") == "interval"
    assert spec.interval.ToNanoseconds() == 90 * 10**9
    assert spec.time_zone == ""
    # Unset policies go out as the documented defaults, not as UNSPECIFIED.
    assert spec.overlap == schedules_pb2.OVERLAP_POLICY_SKIP
    assert spec.catch_up == schedules_pb2.CATCH_UP_POLICY_SKIP
    assert spec.task.custom.type == "purge_old"
    assert spec.task.custom.json == '{"days":30}'
    assert spec.task.options.delay.seconds == 5
    out = capsys.readouterr().out
    assert row(out, "timing") == ["timing", "every 1m30s"]
    assert row(out, "task") == ["task", "purge_old"]
    assert row(out, "task options") == ["task options", "delay 5s"]
    assert row(out, "overlap") == ["overlap", "skip"]


def test_create_json_parses(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["schedule", "create", "news", "--cron", "@hourly", "--overlap", "allow"]
    assert run(gateway, *argv, "ai_summarization", "--text", "a. b.", "--json") == 0
    schedule = json.loads(capsys.readouterr().out)
    assert schedule["id"] == "news"
    assert schedule["spec"]["cron"] == "@hourly"
    assert schedule["spec"]["overlap"] == "OVERLAP_POLICY_ALLOW"
    assert schedule["spec"]["task"]["aiSummarization"]["text"] == "a. b."


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (
            ["--cron", "0 7 * * *", "--tz", "Mars/Olympus", "text_processing", "--text", "x"],
            "spec.time_zone: unknown time zone 'Mars/Olympus'",
        ),
        (["--cron", "every day", "text_processing", "--text", "x"], "spec.cron: not a cron"),
        (["--every", "0.5", "text_processing", "--text", "x"], "spec.interval: must be from 1s"),
        (["--every", "60", "text_processing", "--text", ""], "spec.task.text_processing.text"),
    ],
)
def test_invalid_spec_exits_2_naming_the_field(
    gateway: Gateway, capsys: pytest.CaptureFixture[str], flags: list[str], error: str
) -> None:
    assert run(gateway, "schedule", "create", "news", *flags) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: invalid argument: ")
    assert error in captured.err and captured.err.count("\n") == 1
    assert captured.out == ""


def test_existing_id_exits_1(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(gateway, "schedule", "create", "digest", "--every", "60", "purge_old") == 1
    assert capsys.readouterr().err == "error: already exists: schedule 'digest' exists already\n"


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (["--every", "60", "--tz", "UTC", "purge_old"], "--tz goes with --cron"),
        (["--every", "60", "batch_processing", "--text", "x"], "--text does not apply"),
        (["--every", "60", "--cron", "@daily", "purge_old"], "not allowed with argument"),
        (["purge_old"], "one of the arguments --cron --every is required"),
        (["--every", "60", "image_processing", "--output", "x.png"], "unrecognized arguments"),
        (["--every", "nan", "purge_old"], "expected a number"),
    ],
)
def test_impossible_command_lines_exit_2_sending_nothing(
    gateway: Gateway, capsys: pytest.CaptureFixture[str], flags: list[str], error: str
) -> None:
    assert run(gateway, "schedule", "create", "news", *flags) == 2
    assert error in capsys.readouterr().err
    assert gateway.schedules.requests == []


# --- the other schedule actions -------------------------------------------------------------


def test_list_renders_a_table(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(gateway, "schedule", "list") == 0
    out = capsys.readouterr().out
    assert row(out, "ID") == [
        "ID",
        "STATE",
        "TIMING",
        "TYPE",
        "NEXT TICK",
        "LAST TASK",
        "TASKS",
        "SKIPPED",
        "DESCRIPTION",
    ]
    # A paused schedule shows no next tick; the empty cells merge with the spacing.
    assert row(out, "cleanup") == ["cleanup", "paused", "every 1h", "purge_old", "0", "0"]
    next_tick = from_timestamp(NEXT_TICK).astimezone().strftime("%m-%d %H:%M:%S")
    assert row(out, "digest") == [
        "digest",
        "active",
        "cron 0 7 * * * (Europe/Paris)",
        "text_processing",
        next_tick,
        "01jbdigest0000000000000000",
        "12",
        "1",
        "Morning digest",
    ]


def test_list_json_parses(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(gateway, "--json", "schedule", "list") == 0
    listing = json.loads(capsys.readouterr().out)
    assert [s["id"] for s in listing["schedules"]] == ["cleanup", "digest"]
    assert listing["schedules"][0]["paused"] is True
    assert listing["schedules"][0]["spec"]["interval"] == "3600s"


def test_get_shows_every_field(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(gateway, "schedule", "get", "digest") == 0
    out = capsys.readouterr().out
    assert row(out, "description") == ["description", "Morning digest"]
    assert row(out, "state") == ["state", "active"]
    assert row(out, "task options") == ["task options", "priority high"]
    assert row(out, "last task") == ["last task", "01jbdigest0000000000000000"]
    assert row(out, "tasks created") == ["tasks created", "12"]
    assert row(out, "skipped ticks") == ["skipped ticks", "1"]


def test_get_unknown_exits_1(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(gateway, "schedule", "get", "nope") == 1
    assert capsys.readouterr().err == "error: not found: schedule 'nope' does not exist\n"


def test_pause_resume_delete_trigger(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(gateway, "schedule", "pause", "digest") == 0
    assert capsys.readouterr().out.split() == ["digest", "paused"]
    assert gateway.schedules.schedules["digest"].paused
    assert run(gateway, "schedule", "resume", "digest") == 0
    assert capsys.readouterr().out.split()[:4] == ["digest", "active,", "next", "tick"]
    assert run(gateway, "schedule", "trigger", "digest") == 0
    assert capsys.readouterr().out.split() == [
        TASK_ID,
        "pending",
        "text_processing",
        "(schedule",
        "digest)",
    ]
    assert run(gateway, "--json", "schedule", "trigger", "digest") == 0
    triggered = json.loads(capsys.readouterr().out)
    assert triggered["task"]["scheduleId"] == "digest"
    assert run(gateway, "schedule", "delete", "digest") == 0
    assert capsys.readouterr().out == "deleted schedule digest\n"
    assert "digest" not in gateway.schedules.schedules
    by_id = (
        schedules_pb2.PauseScheduleRequest,
        schedules_pb2.ResumeScheduleRequest,
        schedules_pb2.TriggerScheduleRequest,
        schedules_pb2.DeleteScheduleRequest,
    )
    sent = [
        (type(r).__name__, r.schedule_id)
        for r in gateway.schedules.requests
        if isinstance(r, by_id)
    ]
    assert sent == [
        ("PauseScheduleRequest", "digest"),
        ("ResumeScheduleRequest", "digest"),
        ("TriggerScheduleRequest", "digest"),
        ("TriggerScheduleRequest", "digest"),
        ("DeleteScheduleRequest", "digest"),
    ]


# --- queues ---------------------------------------------------------------------------------


def test_queues_renders_a_table(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(gateway, "queues") == 0
    out = capsys.readouterr().out
    assert row(out, "TYPE") == [
        "TYPE",
        "STATE",
        "WAITING HIGH",
        "WAITING NORMAL",
        "WAITING LOW",
        "IN FLIGHT",
        "MAX RUNNING",
        "MAX/S",
        "DESCRIPTION",
    ]
    assert row(out, "image_processing") == [
        "image_processing",
        "paused",
        "2",
        "5,000",
        "0",
        "3",
        "3",
        "2.5",
        "Resize and convert images",
    ]
    assert row(out, "text_processing") == [
        "text_processing",
        "active",
        "0",
        "0",
        "0",
        "0",
        "-",
        "-",
        "Text statistics",
    ]


def test_queues_json_parses(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(gateway, "queues", "--json") == 0
    [image, text] = json.loads(capsys.readouterr().out)["queues"]
    assert image["waiting"] == ["2", "5000", "0"]
    assert image["limits"] == {"maxConcurrency": 3, "maxPerSecond": 2.5}
    assert text["type"] == "text_processing"


def test_pause_and_resume_a_type(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(gateway, "pause", "text_processing") == 0
    assert capsys.readouterr().out.startswith("text_processing paused; limits: none; waiting: ")
    assert gateway.queues.queues["text_processing"].paused
    assert run(gateway, "resume", "image_processing", "--json") == 0
    assert json.loads(capsys.readouterr().out)["type"] == "image_processing"
    assert not gateway.queues.queues["image_processing"].paused
    assert [type(r) for r in gateway.queues.requests] == [
        queues_pb2.PauseQueueRequest,
        queues_pb2.ResumeQueueRequest,
    ]


def test_pause_errors(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(gateway, "pause", "Not A Type") == 2
    assert capsys.readouterr().err == "error: invalid argument: type: bad type name\n"
    assert run(gateway, "resume", "video") == 1
    assert "not found: task type 'video' is not registered" in capsys.readouterr().err


def test_limit_keeps_the_limit_not_given(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(gateway, "limit", "image_processing", "--max-concurrency", "5") == 0
    assert "limits: 5 running, 2.5/s" in capsys.readouterr().out
    assert run(gateway, "limit", "image_processing", "--max-per-second", "0") == 0
    assert "limits: 5 running;" in capsys.readouterr().out
    assert run(gateway, "limit", "image_processing", "--max-concurrency", "0") == 0
    assert "limits: none;" in capsys.readouterr().out
    sets = [r for r in gateway.queues.requests if isinstance(r, queues_pb2.SetQueueLimitsRequest)]
    assert [(r.limits.max_concurrency, r.limits.max_per_second) for r in sets] == [
        (5, 2.5),
        (5, 0.0),
        (0, 0.0),
    ]


def test_limit_errors_exit_2(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(gateway, "limit", "image_processing", "--max-per-second", "-1") == 2
    assert capsys.readouterr().err == (
        "error: invalid argument: limits.max_per_second: must be a number from 0 to 1e+06\n"
    )
    assert run(gateway, "limit", "image_processing") == 2
    assert "give --max-concurrency and/or --max-per-second" in capsys.readouterr().err
    assert run(gateway, "limit", "image_processing", "--max-concurrency", "-3") == 2
    assert "expected a whole number from 0" in capsys.readouterr().err
