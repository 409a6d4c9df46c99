"""Request validation: every invalid field is named, and nothing else ever escapes."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any, cast

import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.api.tasks.v1 import tasks_pb2
from conveyor.config import MIB, Limits
from conveyor.errors import InvalidArgument
from conveyor.ids import new_task_id
from conveyor.intake.checks import MAX_VIOLATIONS
from conveyor.intake.reads import MAX_PAGE_SIZE, validate_list, validate_task_id
from conveyor.intake.validation import validate_submit, validate_submit_many

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
LIMITS = Limits(max_text_bytes=100, max_image_bytes=50, max_batch_items=5, max_tasks_per_call=3)
Request = tasks_pb2.SubmitTaskRequest


def text(value: str = "hello", **fields: Any) -> Request:
    return Request(text_processing=tasks_pb2.TextProcessingInput(text=value, **fields))


def with_options(**fields: Any) -> Request:
    request = text()
    request.options.CopyFrom(tasks_pb2.TaskOptions(**fields))
    return request


def duration(seconds: int, nanos: int = 0) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=seconds, nanos=nanos)


def at(moment: dt.datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(moment)
    return ts


def image(*operations: tasks_pb2.ImageOperation, data: bytes = b"png", fmt: Any = 0) -> Request:
    return Request(
        image_processing=tasks_pb2.ImageProcessingInput(
            image=data, operations=operations, output_format=fmt
        )
    )


def batch(
    items: list[str], operation: Any = tasks_pb2.BATCH_OPERATION_SHA256, **kw: int
) -> Request:
    return Request(
        batch_processing=tasks_pb2.BatchProcessingInput(items=items, operation=operation, **kw)
    )


def custom(type_: str, payload: dict[str, Any] | None = None) -> Request:
    request = Request(custom=tasks_pb2.CustomTaskInput(type=type_))
    request.custom.payload.update(payload or {})
    return request


def custom_json(text: str, type_: str = "t") -> Request:
    return Request(custom=tasks_pb2.CustomTaskInput(type=type_, json=text))


def transforms(*values: Any) -> Request:
    request = text()
    request.text_processing.transforms.extend(values)
    return request


def summarization(value: str = "A. B.", max_sentences: int = 0) -> Request:
    return Request(
        ai_summarization=tasks_pb2.AiSummarizationInput(text=value, max_sentences=max_sentences)
    )


Op = tasks_pb2.ImageOperation

VALID: list[tuple[str, Callable[[], Request]]] = [
    ("text", lambda: transforms(tasks_pb2.TEXT_TRANSFORM_UPPER, tasks_pb2.TEXT_TRANSFORM_SLUG)),
    ("text at the byte limit", lambda: text("é" * 50)),
    ("summarization", lambda: summarization(max_sentences=100)),
    ("batch", lambda: batch(["a", "", "c"], chunk_size=10_000)),
    (
        "image",
        lambda: image(
            Op(resize=tasks_pb2.ImageResize(width=1, height=10_000)),
            Op(grayscale=tasks_pb2.ImageGrayscale()),
            Op(rotate=tasks_pb2.ImageRotate(degrees=-360)),
            fmt=tasks_pb2.IMAGE_FORMAT_WEBP,
        ),
    ),
    ("custom", lambda: custom("send_email", {"to": ["a@b.c"], "n": 1.5, "x": None})),
    (
        "custom json",
        lambda: custom_json('{"id": 18446744073709551615, "min": -9223372036854775808}'),
    ),
    ("run_at in the past runs now", lambda: with_options(run_at=at(NOW - dt.timedelta(days=9)))),
    ("run_at within a year", lambda: with_options(run_at=at(NOW + dt.timedelta(days=364)))),
    (
        "every option",
        lambda: with_options(
            max_attempts=100,
            timeout=duration(86_400),
            priority=tasks_pb2.TASK_PRIORITY_LOW,
            idempotency_key="order-42",
            labels={"team/app.name-1": "v" * 255},
            delay=duration(0, 5),
        ),
    ),
]


@pytest.mark.parametrize(("name", "make"), VALID, ids=[name for name, _ in VALID])
def test_valid_requests_pass(name: str, make: Callable[[], Request]) -> None:
    validate_submit(make(), LIMITS, now=NOW)


INVALID: list[tuple[str, Callable[[], Request], str]] = [
    ("no input", Request, "input"),
    ("empty text", lambda: text(""), "text_processing.text"),
    ("text over the limit in bytes", lambda: text("é" * 51), "text_processing.text"),
    ("top_words", lambda: text(top_words=101), "text_processing.top_words"),
    ("unspecified transform", lambda: transforms(1, 0), "text_processing.transforms[1]"),
    ("unknown transform", lambda: transforms(99), "text_processing.transforms[0]"),
    ("negative transform", lambda: transforms(-3), "text_processing.transforms[0]"),
    ("too many transforms", lambda: transforms(*[1] * 17), "text_processing.transforms"),
    ("summary text", lambda: summarization(""), "ai_summarization.text"),
    ("max_sentences", lambda: summarization(max_sentences=101), "ai_summarization.max_sentences"),
    ("no items", lambda: batch([]), "batch_processing.items"),
    ("too many items", lambda: batch(["a"] * 6), "batch_processing.items"),
    ("no operation", lambda: batch(["a"], 0), "batch_processing.operation"),
    ("unknown operation", lambda: batch(["a"], 42), "batch_processing.operation"),
    ("chunk_size", lambda: batch(["a"], chunk_size=10_001), "batch_processing.chunk_size"),
    ("empty image", lambda: image(data=b""), "image_processing.image"),
    ("image too large", lambda: image(data=b"x" * 51), "image_processing.image"),
    ("unknown format", lambda: image(fmt=17), "image_processing.output_format"),
    ("too many operations", lambda: image(*[Op(grayscale={})] * 21), "image_processing.operations"),
    ("empty operation", lambda: image(Op()), "image_processing.operations[0].operation"),
    (
        "resize width 0",
        lambda: image(Op(resize={"width": 0, "height": 5})),
        "image_processing.operations[0].resize.width",
    ),
    (
        "thumbnail too tall",
        lambda: image(Op(grayscale={}), Op(thumbnail={"max_width": 5, "max_height": 10_001})),
        "image_processing.operations[1].thumbnail.max_height",
    ),
    (
        "rotate NaN",
        lambda: image(Op(rotate={"degrees": math.nan})),
        "image_processing.operations[0].rotate.degrees",
    ),
    (
        "rotate too far",
        lambda: image(Op(rotate={"degrees": 360.5})),
        "image_processing.operations[0].rotate.degrees",
    ),
    ("custom type empty", lambda: custom(""), "custom.type"),
    ("custom type pattern", lambda: custom("Send-Email"), "custom.type"),
    ("custom type builtin", lambda: custom("text_processing"), "custom.type"),
    ("custom payload too big", lambda: custom("t", {"a": "x" * 200}), "custom.payload"),
    ("custom payload NaN", lambda: custom("t", {"a": [1, math.inf]}), 'custom.payload["a"][1]'),
    ("custom json not JSON", lambda: custom_json("{'a': 1}"), "custom.json"),
    ("custom json a list", lambda: custom_json("[1]"), "custom.json"),
    ("custom json NaN", lambda: custom_json('{"a": NaN}'), "custom.json"),
    ("custom json Infinity", lambda: custom_json('{"a": 1e999}'), "custom.json"),
    ("custom json past 64 bits", lambda: custom_json('{"a": 18446744073709551616}'), "custom.json"),
    (
        "custom json too deep",
        lambda: custom_json('{"a":' + "[" * 40 + "]" * 40 + "}"),
        "custom.json",
    ),
    ("custom json too big", lambda: custom_json('{"a": "' + "x" * 200 + '"}'), "custom.json"),
    (
        "custom json and payload",
        lambda: Request(custom=tasks_pb2.CustomTaskInput(type="t", json="{}", payload={"a": 1})),
        "custom.payload",
    ),
    ("max_attempts", lambda: with_options(max_attempts=101), "options.max_attempts"),
    ("negative timeout", lambda: with_options(timeout=duration(-1)), "options.timeout"),
    ("timeout over 24h", lambda: with_options(timeout=duration(86_401)), "options.timeout"),
    ("timeout bad nanos", lambda: with_options(timeout=duration(1, -5)), "options.timeout"),
    ("timeout nanos range", lambda: with_options(timeout=duration(0, 10**9)), "options.timeout"),
    ("unknown priority", lambda: with_options(priority=9), "options.priority"),
    ("long key", lambda: with_options(idempotency_key="k" * 201), "options.idempotency_key"),
    ("control key", lambda: with_options(idempotency_key="a\nb"), "options.idempotency_key"),
    (
        "too many labels",
        lambda: with_options(labels={f"k{i}": "v" for i in range(33)}),
        "options.labels",
    ),
    ("label key", lambda: with_options(labels={"a b": "v"}), 'options.labels["a b"]'),
    ("empty label key", lambda: with_options(labels={"": "v"}), 'options.labels[""]'),
    ("label value", lambda: with_options(labels={"k": "v" * 256}), 'options.labels["k"]'),
    (
        "delay with run_at",
        lambda: with_options(delay=duration(5), run_at=at(NOW)),
        "options.delay",
    ),
    ("negative delay", lambda: with_options(delay=duration(-5)), "options.delay"),
    ("delay over a year", lambda: with_options(delay=duration(366 * 86_400)), "options.delay"),
    (
        "run_at too far",
        lambda: with_options(run_at=at(NOW + dt.timedelta(days=366))),
        "options.run_at",
    ),
    (
        "run_at invalid",
        lambda: with_options(run_at=timestamp_pb2.Timestamp(seconds=0, nanos=-1)),
        "options.run_at",
    ),
]


@pytest.mark.parametrize(("name", "make", "field"), INVALID, ids=[row[0] for row in INVALID])
def test_invalid_requests_name_the_field(
    name: str, make: Callable[[], Request], field: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_submit(make(), LIMITS, now=NOW)
    assert [v.field for v in caught.value.violations] == [field]
    assert field in str(caught.value)


def test_batch_item_and_total_sizes() -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_submit(batch(["a", "b" * 70_000]), Limits())
    assert [v.field for v in caught.value.violations] == ["batch_processing.items[1]"]
    with pytest.raises(InvalidArgument) as caught:
        validate_submit(batch(["x" * 300] * 3), LIMITS)  # 900 bytes > 100 * 8
    assert [v.field for v in caught.value.violations] == ["batch_processing.items"]


def test_every_problem_is_reported_at_once() -> None:
    request = text("", top_words=500)
    request.options.max_attempts = 1000
    request.options.labels["bad key"] = "v"
    with pytest.raises(InvalidArgument) as caught:
        validate_submit(request, LIMITS, now=NOW)
    assert {v.field for v in caught.value.violations} == {
        "text_processing.text",
        "text_processing.top_words",
        "options.max_attempts",
        'options.labels["bad key"]',
    }


def test_prefix_is_put_before_every_path() -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_submit(text(""), LIMITS, "requests[7].", now=NOW)
    assert caught.value.violations[0].field == "requests[7].text_processing.text"


def test_batch_submit_names_each_request() -> None:
    many = tasks_pb2.SubmitTasksRequest(requests=[text(), text(""), image(data=b"")])
    with pytest.raises(InvalidArgument) as caught:
        validate_submit_many(many, LIMITS, now=NOW)
    assert [v.field for v in caught.value.violations] == [
        "requests[1].text_processing.text",
        "requests[2].image_processing.image",
    ]


@pytest.mark.parametrize("count", [0, 4])
def test_batch_submit_counts_requests(count: int) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_submit_many(tasks_pb2.SubmitTasksRequest(requests=[text()] * count), LIMITS)
    assert [v.field for v in caught.value.violations] == ["requests"]


def test_violations_are_capped() -> None:
    limits = Limits(max_tasks_per_call=1000)
    many = tasks_pb2.SubmitTasksRequest(requests=[text("")] * 500)
    with pytest.raises(InvalidArgument) as caught:
        validate_submit_many(many, limits)
    assert len(caught.value.violations) == MAX_VIOLATIONS


def test_task_ids() -> None:
    validate_task_id(new_task_id())
    for bad in ("", "u" * 26, new_task_id()[:-1], new_task_id().upper()):
        with pytest.raises(InvalidArgument) as caught:
            validate_task_id(bad, "tasks[0]")
        assert caught.value.violations[0].field == "tasks[0]"


def test_list_filters() -> None:
    request = tasks_pb2.ListTasksRequest(
        states=[tasks_pb2.TASK_STATE_RUNNING, tasks_pb2.TASK_STATE_UNSPECIFIED, cast(Any, 12)],
        type="Bad Type",
        labels={"ok": "v", "no way": "v"},
        page_token="t" * 513,
    )
    with pytest.raises(InvalidArgument) as caught:
        validate_list(request)
    assert [v.field for v in caught.value.violations] == [
        "states[1]",
        "states[2]",
        "type",
        'labels["no way"]',
        "page_token",
    ]


@pytest.mark.parametrize(
    ("asked", "used"), [(0, 50), (10, 10), (1000, 1000), (5000, MAX_PAGE_SIZE)]
)
def test_list_page_size_defaults_and_clamps(asked: int, used: int) -> None:
    request = tasks_pb2.ListTasksRequest(
        page_size=asked, type="resize_video", states=[tasks_pb2.TASK_STATE_PENDING]
    )
    assert validate_list(request) == used


# --- property: validation never fails in any other way -----------------------------------

enum_ints: st.SearchStrategy[Any] = st.one_of(st.integers(-5, 10), st.integers(-(2**31), 2**31 - 1))
uint32s = st.one_of(st.integers(0, 12_000), st.integers(0, 2**32 - 1))
small_text = st.text(max_size=40)
json_leaf = st.one_of(st.none(), st.booleans(), st.floats(), small_text)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(small_text, inner, max_size=3)
    ),
    max_leaves=10,
)


@st.composite
def image_operations(draw: st.DrawFn) -> tasks_pb2.ImageOperation:
    op = tasks_pb2.ImageOperation()
    kind = draw(st.sampled_from(["none", "resize", "thumbnail", "grayscale", "rotate"]))
    if kind == "resize":
        op.resize.width, op.resize.height = draw(uint32s), draw(uint32s)
    elif kind == "thumbnail":
        op.thumbnail.max_width, op.thumbnail.max_height = draw(uint32s), draw(uint32s)
    elif kind == "grayscale":
        op.grayscale.SetInParent()
    elif kind == "rotate":
        op.rotate.degrees = draw(st.floats())
    return op


@st.composite
def submit_requests(draw: st.DrawFn) -> Request:
    request = Request()
    kind = draw(st.sampled_from([None, *tasks_pb2.SubmitTaskRequest.DESCRIPTOR.oneofs[0].fields]))
    name = kind.name if kind is not None else ""
    if name == "text_processing":
        msg = request.text_processing
        msg.text = draw(small_text)
        msg.transforms.extend(draw(st.lists(enum_ints, max_size=20)))
        msg.top_words = draw(uint32s)
    elif name == "ai_summarization":
        request.ai_summarization.text = draw(small_text)
        request.ai_summarization.max_sentences = draw(uint32s)
    elif name == "batch_processing":
        request.batch_processing.items.extend(draw(st.lists(small_text, max_size=8)))
        request.batch_processing.operation = draw(enum_ints)
        request.batch_processing.chunk_size = draw(uint32s)
    elif name == "image_processing":
        request.image_processing.image = draw(st.binary(max_size=80))
        request.image_processing.operations.extend(draw(st.lists(image_operations(), max_size=22)))
        request.image_processing.output_format = draw(enum_ints)
    elif name == "custom":
        request.custom.type = draw(st.one_of(small_text, st.sampled_from(["t", "text_processing"])))
        request.custom.payload.update(draw(st.dictionaries(small_text, json_value, max_size=4)))
    if draw(st.booleans()):
        options = request.options
        options.max_attempts = draw(uint32s)
        options.priority = draw(enum_ints)
        options.idempotency_key = draw(small_text)
        options.labels.update(draw(st.dictionaries(small_text, small_text, max_size=35)))
        for field in ("timeout", "delay"):
            if draw(st.booleans()):
                seconds = draw(st.integers(-(10**11), 10**11))
                getattr(options, field).seconds = seconds
                getattr(options, field).nanos = draw(st.integers(-(2**31), 2**31 - 1))
        if draw(st.booleans()):
            options.run_at.seconds = draw(st.integers(-(2**63), 2**63 - 1))
            options.run_at.nanos = draw(st.integers(-(2**31), 2**31 - 1))
    return request


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(submit_requests())
def test_validation_passes_or_names_fields(request: Request) -> None:
    try:
        validate_submit(request, LIMITS)
    except InvalidArgument as exc:
        assert exc.violations
        assert all(v.field and v.description for v in exc.violations)


def test_a_transform_asked_for_twice_is_refused_at_its_repeat() -> None:
    upper, slug = tasks_pb2.TEXT_TRANSFORM_UPPER, tasks_pb2.TEXT_TRANSFORM_SLUG
    with pytest.raises(InvalidArgument) as caught:
        validate_submit(transforms(upper, slug, upper), LIMITS)
    [violation] = caught.value.violations
    assert violation.field == "text_processing.transforms[2]"
    assert violation.description == "TEXT_TRANSFORM_UPPER is already asked for at [0]"


def test_results_are_estimated_from_the_text_and_what_is_done_to_it() -> None:
    limits = Limits(max_message_bytes=MIB + 1000)  # 1,000 bytes for the result
    upper = tasks_pb2.BATCH_OPERATION_UPPERCASE
    # Upper case keeps ASCII as long as it is and can triple other text.
    validate_submit(batch(["x" * 480], upper), limits)
    with pytest.raises(InvalidArgument) as caught:
        validate_submit(batch(["é" * 240], upper), limits)
    assert [v.field for v in caught.value.violations] == ["batch_processing.items"]
    # Python prints at most 4,300 digits: a square of many more is an item error, not big.
    validate_submit(batch(["9" * 60_000] * 130, tasks_pb2.BATCH_OPERATION_SQUARE), Limits())
    every = list(range(1, 8))
    validate_submit(transforms(*every[:1]), limits)
    with pytest.raises(InvalidArgument) as caught:
        validate_submit(Request(text_processing={"text": "ΐ" * 100, "transforms": every}), limits)
    assert [v.field for v in caught.value.violations] == ["text_processing.text"]


def test_unknown_fields_are_named_by_their_path_and_number() -> None:
    request = image(Op(resize=tasks_pb2.ImageResize(width=2, height=2)))
    inner = request.image_processing.operations[0].resize
    inner.MergeFromString(b"\x98\x06\x01")  # field 99, varint 1
    request.options.MergeFromString(b"\xa2\x06\x00")  # field 100, empty bytes
    with pytest.raises(InvalidArgument) as caught:
        validate_submit(request, LIMITS)
    assert {v.field: v.description for v in caught.value.violations} == {
        "image_processing.operations[0].resize.99": "is not a field of ImageResize (varint); "
        "fields the gateway does not know are refused",
        "options.100": "is not a field of TaskOptions (length-delimited); "
        "fields the gateway does not know are refused",
    }
