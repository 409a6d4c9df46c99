"""Inputs cannot carry data past the gateway's limits: fields their messages do not
declare, repeated transforms and inputs whose results would outgrow a message are refused
with INVALID_ARGUMENT naming the field, and nothing is queued or recorded (real servers).
"""

from __future__ import annotations

import grpc
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from conveyor import subjects
from conveyor.api.tasks.v1 import tasks_pb2 as S
from tests.conftest import System
from tests.support import custom_handlers
from tests.support.helpers import png, varint, violations, wire_field

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
UNKNOWN = wire_field(99, b"u" * (2 * MIB))  # twice the text limit, in a field nobody declares
TEXT = S.TextProcessingInput(text="some text", transforms=[S.TEXT_TRANSFORM_UPPER])


def with_unknown(message: bytes) -> bytes:
    return message + UNKNOWN


def submit_bytes(**parts: bytes) -> bytes:
    """A SubmitTaskRequest serialized by hand from its fields' serialized messages."""
    numbers = {"text_processing": 1, "image_processing": 4, "custom": 15, "options": 16}
    return b"".join(wire_field(numbers[name], data) for name, data in parts.items())


def refused_raw_requests() -> dict[str, tuple[str, bytes]]:
    """name -> (method, request bytes) of requests smuggling an unknown field somewhere."""
    text = TEXT.SerializeToString()
    resize = S.ImageOperation(resize=S.ImageResize(width=8, height=8))
    image = S.ImageProcessingInput(image=png(16, 16)).SerializeToString()
    # ImageProcessingInput.operations (2) holding one operation whose resize has field 99.
    operation = wire_field(1, with_unknown(resize.resize.SerializeToString()))
    value = wire_field(1, b"k") + wire_field(2, with_unknown(varint(4 << 3) + varint(1)))
    payload = wire_field(1, value)  # Struct.fields["k"] = Value(bool_value=True, 99=...)
    custom = wire_field(1, b"greet") + wire_field(2, payload)
    many = b"".join(
        wire_field(1, submit_bytes(text_processing=t)) for t in (text, with_unknown(text))
    )
    return {
        "text_processing": ("SubmitTask", submit_bytes(text_processing=with_unknown(text))),
        "options": (
            "SubmitTask",
            submit_bytes(text_processing=text, options=with_unknown(b"")),
        ),
        "image operation": (
            "SubmitTask",
            submit_bytes(image_processing=image + wire_field(2, operation)),
        ),
        "custom payload": ("SubmitTask", submit_bytes(custom=custom)),
        "top level": ("SubmitTask", submit_bytes(text_processing=text) + UNKNOWN),
        "batch": ("SubmitTasks", many),
    }


FIELDS = {
    "text_processing": "text_processing.99",
    "options": "options.99",
    "image operation": "image_processing.operations[0].resize.99",
    "custom payload": "custom.payload",
    "top level": "99",
    "batch": "requests[1].text_processing.99",
}


async def assert_nothing_queued(js: JetStreamContext) -> None:
    # EVENTS keeps every event, so it holds the submit of anything a worker took already.
    for stream in (subjects.STREAM_TASKS, subjects.STREAM_EVENTS):
        assert (await js.stream_info(stream)).state.messages == 0, stream


async def test_unknown_fields_anywhere_in_a_submit_are_refused_by_name(
    system: System, nats_connection: tuple[NATS, JetStreamContext]
) -> None:
    await system.start_store()
    await system.start_worker(custom_handlers.registry())
    await system.start_gateway()
    assert system.channel is not None
    service = "/conveyor.api.tasks.v1.TaskService/"
    for name, (method, request) in refused_raw_requests().items():
        call = system.channel.unary_unary(service + method)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
        assert list(violations(caught.value)) == [FIELDS[name]], name
    await assert_nothing_queued(nats_connection[1])


def batch(
    items: list[str], operation: S.BatchOperation, chunk_size: int = 0
) -> S.SubmitTaskRequest:
    return S.SubmitTaskRequest(
        batch_processing=S.BatchProcessingInput(
            items=items, operation=operation, chunk_size=chunk_size
        )
    )


AMPLIFIED = {
    "text_processing.transforms[1]": S.SubmitTaskRequest(
        text_processing=S.TextProcessingInput(
            text="word " * 1000, transforms=[S.TEXT_TRANSFORM_UPPER] * 16
        )
    ),
    # 84 items of 64 KB that triple in upper case ("ΐ" is "Ϊ́"): 16 MB of result.
    "batch_processing.items": batch(["ΐ" * 32_000] * 84, S.BATCH_OPERATION_UPPERCASE),
    "image_processing.operations[0].resize": S.SubmitTaskRequest(
        image_processing=S.ImageProcessingInput(
            image=png(16, 16),
            operations=[S.ImageOperation(resize=S.ImageResize(width=10_000, height=10_000))],
        )
    ),
}


async def test_inputs_that_would_multiply_their_result_are_refused_by_name(
    system: System, nats_connection: tuple[NATS, JetStreamContext]
) -> None:
    await system.start_store()
    await system.start_worker(custom_handlers.registry())
    await system.start_gateway()
    for field, request in AMPLIFIED.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await system.stub.SubmitTask(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in violations(caught.value), (field, violations(caught.value))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.stub.SubmitTasks(S.SubmitTasksRequest(requests=list(AMPLIFIED.values())))
    assert {f"requests[{i}].{field}" for i, field in enumerate(AMPLIFIED)} <= set(
        violations(caught.value)
    )
    await assert_nothing_queued(nats_connection[1])
