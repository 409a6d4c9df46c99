"""conveyor.protojson writes the same JSON as json_format.MessageToDict, for every
message of the public API filled at random (every field kind, nested, repeated, maps,
oneofs, well-known types, unknown enum numbers)."""

from __future__ import annotations

import random
import string
from typing import Any

import pytest
from google.protobuf import any_pb2, json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from conveyor import protojson, transcode
from conveyor.api.tasks.v1 import tasks_pb2

_INTS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(string.printable + "éλ😀\u2028") for _ in range(rng.randint(0, 8)))


def _value(rng: random.Random, field: Any, depth: int) -> object:
    kind = field.type
    if kind in _INTS:
        low, high = _INTS[kind]
        return rng.choice([0, 1, low, high, rng.randint(low, high)])
    if kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return rng.choice([0.0, 0.1, 1.5e300 if kind == FieldDescriptor.TYPE_DOUBLE else 3.4e38])
    if kind == FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if kind == FieldDescriptor.TYPE_STRING:
        return _text(rng)
    if kind == FieldDescriptor.TYPE_BYTES:
        return rng.randbytes(rng.randint(0, 9))
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        numbers = [v.number for v in field.enum_type.values]
        return rng.choice([*numbers, 99])  # an unknown number too
    raise AssertionError(kind)


def fill(rng: random.Random, message: Message, depth: int = 0) -> Message:
    descriptor = message.DESCRIPTOR
    if descriptor.full_name.startswith("google.protobuf."):
        return _well_known(rng, message)
    for field in descriptor.fields:
        if rng.random() < 0.35 or (field.message_type is not None and depth > 3):
            continue
        target = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            for _ in range(rng.randint(0, 3)):
                key = _value(rng, key_field, depth)
                if value_field.message_type is not None:
                    fill(rng, target[key], depth + 1)
                else:
                    target[key] = _value(rng, value_field, depth)
        elif field.is_repeated:
            for _ in range(rng.randint(0, 3)):
                if field.message_type is not None:
                    fill(rng, target.add(), depth + 1)
                else:
                    target.append(_value(rng, field, depth))
        elif field.message_type is not None:
            fill(rng, target, depth + 1)
        else:
            setattr(message, field.name, _value(rng, field, depth))
    return message


def _well_known(rng: random.Random, message: Message) -> Message:
    descriptor = message.DESCRIPTOR
    if descriptor.full_name == "google.protobuf.Timestamp":
        seconds = rng.choice([-62_135_596_800, -1, 0, 253_402_300_799, rng.randint(0, 2**32)])
        message.FromSeconds(seconds)  # type: ignore[attr-defined]
        message.nanos = rng.choice([0, 1000, 1, 123_000_000, 999_999_999, 120_450_000])  # type: ignore[attr-defined]
        return message
    if descriptor.full_name == "google.protobuf.Duration":
        message.seconds = rng.randint(0, 10**6)  # type: ignore[attr-defined]
        message.nanos = rng.choice([0, 500_000_000])  # type: ignore[attr-defined]
        return message
    if descriptor.full_name == "google.protobuf.Struct":
        message.update({"a": 1, "b": [True, None, "x"], "c": {"d": 2.5}})  # type: ignore[attr-defined]
        return message
    return message


def _messages() -> list[Descriptor]:
    seen: dict[str, Descriptor] = {}

    def visit(descriptor: Descriptor) -> None:
        if descriptor.full_name in seen or descriptor.GetOptions().map_entry:
            return
        seen[descriptor.full_name] = descriptor
        for field in descriptor.fields:
            if field.message_type is not None:
                visit(field.message_type)

    for service in transcode.public_services():
        for method in service.methods:
            visit(method.input_type)
            visit(method.output_type)
    return list(seen.values())


@pytest.mark.parametrize("descriptor", _messages(), ids=lambda d: d.full_name)
def test_every_public_message_is_written_as_json_format_writes_it(
    descriptor: Descriptor,
) -> None:
    from google.protobuf import message_factory

    cls = message_factory.GetMessageClass(descriptor)
    rng = random.Random(descriptor.full_name)
    for _ in range(40):
        message = fill(rng, cls())
        assert protojson.to_dict(message) == json_format.MessageToDict(message)


def test_a_status_with_details_is_written_as_json_format_writes_it() -> None:
    violation = error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field="a", description="b")]
    )
    detail = any_pb2.Any()
    detail.Pack(violation)
    status = status_pb2.Status(code=3, message="bad", details=[detail])
    assert protojson.to_dict(status) == json_format.MessageToDict(status)
    task = tasks_pb2.Task(id="x", version=2**64 - 1)
    task.result.custom.json = '{"n": 18446744073709551615}'
    assert protojson.to_dict(task) == json_format.MessageToDict(task)
