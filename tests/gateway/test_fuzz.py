"""Fuzzing the real gateway: generated submit requests and raw random bytes.

Every call gets OK or INVALID_ARGUMENT (naming the offending field, or, for bytes that do
not parse as the request at all, saying so), the gateway keeps serving, and
nothing but accepted tasks ever reaches a worker's queue: a core NATS subscription sees
every message published to the task subjects, and each must be an accepted task.

Hypothesis drives a synchronous gRPC client from a thread while the system runs on the
test's event loop, so one real system serves every example.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import sys
from collections.abc import Callable
from typing import Any, TypeVar, cast

import grpc
import nats
import pytest
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from conveyor import subjects
from conveyor.api.events.v1 import events_pb2
from conveyor.api.tasks.v1 import tasks_pb2 as S
from conveyor.api.tasks.v1 import tasks_pb2_grpc
from conveyor.tasks import is_terminal
from tests.conftest import System

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(600),
    # A failing example of a megabyte is reported without its full repr.
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),
    # The system under test runs on the event loop meanwhile and draws retry jitter from
    # `random`; Hypothesis, generating in another thread, takes that for its strategies.
    pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies"),
]

T = TypeVar("T")
MIB = 1024 * 1024
INT32 = st.integers(-(2**31), 2**31 - 1)
UINT32 = st.integers(0, 2**32 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
SUBMIT_METHOD = "/conveyor.api.tasks.v1.TaskService/SubmitTask"
NOT_A_MESSAGE = "the request is not a valid message"
"""How the gateway answers bytes that do not parse as the request (INVALID_ARGUMENT)."""
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- strategies ----------------------------------------------------------------------------
# Each strategy takes ``wild``: False draws only values a well-behaved client could send
# (so requests get accepted and run), True adds anything the wire format can carry.

# Protobuf strings are UTF-8: lone surrogates cannot be sent at all.
CHARACTERS = st.characters(codec="utf-8")
SHORT_TEXT = st.text(CHARACTERS, max_size=40)
# Now and then a text at or just past the 1 MiB limit, or empty.
HUGE_TEXT = st.builds(
    lambda size, char: char * size,
    st.sampled_from([0, 1, MIB - 1, MIB, MIB + 1]),
    st.sampled_from(["a", "é", "\u65e5", "\U0001f600", " "]),
)
TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5d1d0b90000000049454e44ae426082"
)


def either(
    plausible: st.SearchStrategy[T], wild: st.SearchStrategy[T], is_wild: bool
) -> st.SearchStrategy[T]:
    return st.one_of(plausible, wild) if is_wild else plausible


def texts(wild: bool) -> st.SearchStrategy[str]:
    plausible = st.one_of(
        st.text(CHARACTERS, min_size=1, max_size=200), st.just("hello world. Bye!")
    )
    return either(plausible, st.one_of(SHORT_TEXT, HUGE_TEXT), wild)


def counts(limit: int, wild: bool) -> st.SearchStrategy[int]:
    return either(st.integers(0, limit), UINT32, wild)


def enum(values: list[int], wild: bool) -> st.SearchStrategy[int]:
    """Declared values (but the forbidding zero) or, wild, any int32 (proto3 keeps numbers
    no enum declares)."""
    return either(st.sampled_from([v for v in values if v] or values), INT32, wild)


def durations(limit: int, wild: bool) -> st.SearchStrategy[duration_pb2.Duration]:
    plausible = st.builds(
        duration_pb2.Duration, seconds=st.integers(0, limit), nanos=st.integers(0, 999_999_999)
    )
    return either(plausible, st.builds(duration_pb2.Duration, seconds=INT64, nanos=INT32), wild)


def timestamps(wild: bool) -> st.SearchStrategy[timestamp_pb2.Timestamp]:
    now = int(dt.datetime.now(dt.UTC).timestamp())
    plausible = st.builds(
        timestamp_pb2.Timestamp,
        seconds=st.integers(now - 3600, now + 20),
        nanos=st.integers(0, 999_999_999),
    )
    wild_values = st.builds(timestamp_pb2.Timestamp, seconds=INT64, nanos=INT32)
    return either(plausible, wild_values, wild)


def labels(wild: bool) -> st.SearchStrategy[dict[str, str]]:
    key = st.from_regex(r"[a-zA-Z0-9._/-]{1,63}", fullmatch=True)
    if not wild:
        return st.dictionaries(key, SHORT_TEXT, max_size=5)
    long_value = st.text(CHARACTERS, min_size=250, max_size=260)
    return st.dictionaries(
        st.one_of(key, SHORT_TEXT), st.one_of(SHORT_TEXT, long_value), max_size=35
    )


def json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(), st.booleans(), st.floats(allow_nan=True, allow_infinity=True), SHORT_TEXT
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(SHORT_TEXT, inner, max_size=4)
        ),
        max_leaves=20,
    )


def struct_of(values: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


def image_operations(wild: bool) -> st.SearchStrategy[S.ImageOperation]:
    side = either(st.integers(1, 64), UINT32, wild)
    degrees = either(st.floats(-360, 360), st.floats(), wild)
    operations = [
        st.builds(
            lambda w, h: S.ImageOperation(resize=S.ImageResize(width=w, height=h)), side, side
        ),
        st.builds(
            lambda w, h: S.ImageOperation(thumbnail=S.ImageThumbnail(max_width=w, max_height=h)),
            side,
            side,
        ),
        st.just(S.ImageOperation(grayscale=S.ImageGrayscale())),
        st.builds(lambda d: S.ImageOperation(rotate=S.ImageRotate(degrees=d)), degrees),
    ]
    if wild:
        operations.append(st.just(S.ImageOperation()))
    return st.one_of(*operations)


def inputs(wild: bool) -> st.SearchStrategy[dict[str, Any]]:
    """Keyword arguments setting one field of the input oneof (wild: or none)."""
    text = st.builds(
        lambda t, tr, top: {
            "text_processing": S.TextProcessingInput(text=t, transforms=tr, top_words=top)
        },
        texts(wild),
        st.lists(enum(list(S.TextTransform.values()), wild), max_size=18 if wild else 4),
        counts(100, wild),
    )
    summary = st.builds(
        lambda t, n: {"ai_summarization": S.AiSummarizationInput(text=t, max_sentences=n)},
        texts(wild),
        counts(100, wild),
    )
    batch = st.builds(
        lambda items, op, size: {
            "batch_processing": S.BatchProcessingInput(items=items, operation=op, chunk_size=size)
        },
        st.lists(SHORT_TEXT, min_size=0 if wild else 1, max_size=12),
        enum(list(S.BatchOperation.values()), wild),
        counts(20, wild),
    )
    image = st.builds(
        lambda data, ops, fmt: {
            "image_processing": S.ImageProcessingInput(
                image=data, operations=ops, output_format=fmt
            )
        },
        either(st.just(TINY_PNG), st.binary(max_size=64), wild),
        st.lists(image_operations(wild), max_size=22 if wild else 3),
        either(st.sampled_from(list(S.ImageFormat.values())), INT32, wild),
    )
    kinds = [text, summary, batch, image]
    if wild:
        # No worker of the fuzzed system serves a custom type: every one is refused.
        custom = st.builds(
            lambda kind, payload: {
                "custom": S.CustomTaskInput(type=kind, payload=struct_of(payload))
            },
            st.one_of(st.sampled_from(["text_processing", "no_such_type", "", "A-b"]), SHORT_TEXT),
            st.dictionaries(SHORT_TEXT, json_values(), max_size=5),
        )
        kinds += [st.just({}), custom]
    return st.one_of(*kinds)


def options(wild: bool) -> st.SearchStrategy[S.TaskOptions | None]:
    def build(
        attempts: int,
        timeout: duration_pb2.Duration | None,
        priority: int,
        key: str,
        labels: dict[str, str],
        when: tuple[timestamp_pb2.Timestamp | None, duration_pb2.Duration | None],
    ) -> S.TaskOptions:
        built = S.TaskOptions(
            max_attempts=attempts,
            priority=cast(S.TaskPriority, priority),
            idempotency_key=key,
        )
        built.labels.update(labels)
        run_at, delay = when
        for name, value in (("timeout", timeout), ("run_at", run_at), ("delay", delay)):
            if value is not None:
                getattr(built, name).CopyFrom(value)
        return built

    printable = st.text(st.characters(categories=("L", "N", "P", "S", "Zs")), max_size=40)
    key = either(st.one_of(st.just(""), printable), st.text(CHARACTERS, max_size=202), wild)
    run_at = st.tuples(st.one_of(st.none(), timestamps(wild)), st.none())
    delay = st.tuples(st.none(), st.one_of(st.none(), durations(20, wild)))
    when = (
        st.one_of(run_at, delay, st.tuples(timestamps(wild), durations(20, wild)))
        if wild
        else st.one_of(run_at, delay)
    )
    return st.one_of(
        st.none(),
        st.builds(
            build,
            counts(5, wild),
            st.one_of(st.none(), durations(120, wild)),
            either(st.sampled_from(list(S.TaskPriority.values())), INT32, wild),
            key,
            labels(wild),
            when,
        ),
    )


def submit_requests() -> st.SearchStrategy[S.SubmitTaskRequest]:
    """Half well-formed requests, half anything."""

    def requests(wild: bool) -> st.SearchStrategy[S.SubmitTaskRequest]:
        return st.builds(
            lambda i, o: S.SubmitTaskRequest(**i, options=o), inputs(wild), options(wild)
        )

    return st.one_of(requests(False), requests(True))


MANY_VIOLATIONS = S.SubmitTaskRequest(
    text_processing=S.TextProcessingInput(text=""),
    options=S.TaskOptions(labels={f"{i:02d} ¿no?" + "é" * 60: "v" * 300 for i in range(32)}),
)
"""64 violations with long paths: more than the 8 KiB of trailers a client accepts, unless
the error is bounded (the client would see RESOURCE_EXHAUSTED instead)."""


# --- checks -------------------------------------------------------------------------------


class Outcomes:
    """What the fuzzed calls got, and the ids of every task the gateway accepted."""

    def __init__(self) -> None:
        self.codes: collections.Counter[str] = collections.Counter()
        self.accepted: set[str] = set()

    def record_error(self, err: grpc.RpcError) -> None:
        code = err.code()
        details = err.details() or ""
        if details.startswith(NOT_A_MESSAGE):
            self.codes["INVALID_ARGUMENT (not a message)"] += 1
            assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{code.name}: {details}"
            return
        self.codes[code.name] += 1
        assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{code.name}: {details}"
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            status = rpc_status.from_call(err)
            assert status is not None, f"INVALID_ARGUMENT without details: {err.details()}"
            fields = []
            for detail in status.details:
                bad = error_details_pb2.BadRequest()
                if detail.Unpack(bad):
                    fields += [v.field for v in bad.field_violations if v.field]
            assert fields, f"INVALID_ARGUMENT names no field: {err.details()}"


class QueueTap:
    """Every message published to a worker queue (task and delayed subjects)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    async def record(self, msg: Msg) -> None:
        self.messages.append((msg.subject, msg.data))

    def check(self, accepted: set[str]) -> int:
        """Asserts every queued message is a well-formed, accepted task; returns how many."""
        for subject, data in self.messages:
            message = events_pb2.TaskMessage.FromString(data)
            assert message.task_id in accepted, (subject, message.task_id)
            assert subject.endswith("." + message.task_id), subject
            assert message.input.WhichOneof("input") is not None, subject
        return len(self.messages)


async def fuzzed(system: System, run: Callable[[grpc.Channel], None]) -> None:
    """Runs ``run`` with a blocking channel to the gateway in a thread."""
    assert system.gateway is not None
    address = system.gateway.address

    def in_thread() -> None:
        options = [("grpc.max_send_message_length", 64 * MIB)]
        with grpc.insecure_channel(address, options=options) as channel:
            run(channel)

    await asyncio.to_thread(in_thread)


async def still_serving(system: System) -> str:
    """The gateway answers health checks and accepts a valid task, which completes; its id."""
    assert system.gateway is not None and system.channel is not None
    health = health_pb2_grpc.HealthStub(system.channel)
    status = (await health.Check(health_pb2.HealthCheckRequest(), timeout=5)).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    request = S.SubmitTaskRequest(text_processing=S.TextProcessingInput(text="still here"))
    task_id: str = (await system.stub.SubmitTask(request, timeout=10)).task.id
    async with asyncio.timeout(60):
        while True:
            task = (await system.stub.GetTask(S.GetTaskRequest(task_id=task_id))).task
            if task.state == S.TASK_STATE_COMPLETED:
                return task_id
            await asyncio.sleep(0.1)


async def all_finish(system: System, ids: set[str], timeout: float = 120.0) -> None:
    """Every accepted task reaches a terminal state: none of them wedged a worker."""
    unfinished = set(ids)
    async with asyncio.timeout(timeout):
        while unfinished:
            for task_id in sorted(unfinished):
                task = (await system.stub.GetTask(S.GetTaskRequest(task_id=task_id))).task
                if is_terminal(task.state):
                    unfinished.discard(task_id)
            await asyncio.sleep(0.5)


async def tapped(system: System) -> tuple[NATS, QueueTap]:
    tap = QueueTap()
    nc = await nats.connect(system.common.nats_url)
    for prefix in (subjects.TASKS_PREFIX, subjects.DELAYED_PREFIX):
        await nc.subscribe(f"{prefix}.>", cb=tap.record)
    await nc.flush()
    return nc, tap


# --- tests --------------------------------------------------------------------------------


async def test_generated_submits_get_ok_or_invalid_argument(system: System) -> None:
    await system.start()
    nc, tap = await tapped(system)
    outcomes = Outcomes()

    def run(channel: grpc.Channel) -> None:
        stub = tasks_pb2_grpc.TaskServiceStub(channel)

        @FUZZ
        @given(request=submit_requests())
        @example(request=MANY_VIOLATIONS)
        def submit_one(request: S.SubmitTaskRequest) -> None:
            try:
                response = stub.SubmitTask(request, timeout=30)
            except grpc.RpcError as err:
                outcomes.record_error(err)
                return
            outcomes.codes["OK"] += 1
            outcomes.accepted.add(response.task.id)

        @settings(FUZZ, max_examples=50)
        @given(requests=st.lists(submit_requests(), max_size=4))
        def submit_many(requests: list[S.SubmitTaskRequest]) -> None:
            try:
                response = stub.SubmitTasks(S.SubmitTasksRequest(requests=requests), timeout=30)
            except grpc.RpcError as err:
                outcomes.record_error(err)
                return
            outcomes.codes["OK"] += 1
            assert len(response.tasks) == len(requests)
            outcomes.accepted.update(task.id for task in response.tasks)

        submit_one()
        submit_many()

    try:
        await fuzzed(system, run)
        outcomes.accepted.add(await still_serving(system))
        await nc.flush()
    finally:
        await nc.close()
    print(f"fuzzed submits: {dict(outcomes.codes)}", file=sys.stderr)
    assert outcomes.codes["OK"] > 0 and outcomes.codes["INVALID_ARGUMENT"] > 0
    assert tap.check(outcomes.accepted) > 0
    await all_finish(system, outcomes.accepted)


async def test_random_bytes_get_a_clear_status_and_queue_nothing_malformed(
    system: System,
) -> None:
    await system.start()
    nc, tap = await tapped(system)
    outcomes = Outcomes()
    valid = S.SubmitTaskRequest(
        text_processing=S.TextProcessingInput(text="flip my bits")
    ).SerializeToString()

    def mutated(data: bytes, positions: list[int], values: list[int]) -> bytes:
        flipped = bytearray(data)
        for position, value in zip(positions, values, strict=False):
            flipped[position % len(flipped)] = value
        return bytes(flipped)

    byte_edits = st.lists(st.integers(0, 255), min_size=1, max_size=4)
    raw_bytes = st.one_of(
        st.binary(max_size=512),
        st.builds(mutated, st.just(valid), st.lists(st.integers(0, 10**6), max_size=4), byte_edits),
    )

    def run(channel: grpc.Channel) -> None:
        call = channel.unary_unary(SUBMIT_METHOD)  # bytes in, bytes out

        @FUZZ
        @given(data=raw_bytes)
        @example(data=b"")  # parses as an empty request: INVALID_ARGUMENT naming "input"
        @example(data=b"\x00")  # field number 0 does not exist: not a message
        @example(data=valid)
        def send(data: bytes) -> None:
            try:
                answer = call(data, timeout=30)
            except grpc.RpcError as err:
                outcomes.record_error(err)
                return
            outcomes.codes["OK"] += 1
            outcomes.accepted.add(S.SubmitTaskResponse.FromString(answer).task.id)

        send()

    try:
        await fuzzed(system, run)
        outcomes.accepted.add(await still_serving(system))
        await nc.flush()
    finally:
        await nc.close()
    print(f"random bytes: {dict(outcomes.codes)}", file=sys.stderr)
    assert outcomes.codes["INVALID_ARGUMENT (not a message)"] > 0
    assert outcomes.codes["OK"] > 0 and outcomes.codes["INVALID_ARGUMENT"] > 0
    assert tap.check(outcomes.accepted) > 0
    await all_finish(system, outcomes.accepted)
