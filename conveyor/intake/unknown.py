"""Fields of a request that its message type does not declare.

Protobuf keeps fields it does not know, and copying a message copies them: unknown fields
inside a task's input would be published, stored and handed to workers, past every limit
the validation checks. The gateway refuses them instead, naming each by its number.
"""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf import struct_pb2, unknown_fields
from google.protobuf.message import Message

MAX_REPEATED = 1000
"""Elements of one repeated field looked at; validation refuses longer lists anyway."""
_WIRE_TYPES = {0: "varint", 1: "64-bit", 2: "length-delimited", 5: "32-bit"}
_STRUCT = struct_pb2.Struct.DESCRIPTOR.full_name


def unknown_fields_of(
    message: Message, path: str = "", *, nested: bool = True
) -> Iterator[tuple[str, str]]:
    """(field path, description) of every unknown field in the message and, unless
    ``nested`` is False, the messages it holds. A Struct is checked as a whole (its values
    can be many): its path is reported once, without the numbers."""
    if message.DESCRIPTOR.full_name == _STRUCT:
        size = message.ByteSize()
        message.DiscardUnknownFields()  # refused anyway, so nothing is lost
        if message.ByteSize() != size:
            yield path or "(request)", "holds fields that google.protobuf.Struct does not have"
        return
    name = message.DESCRIPTOR.name
    found = unknown_fields.UnknownFieldSet(message)
    for field in (found[i] for i in range(len(found))):
        wire = _WIRE_TYPES.get(field.wire_type, str(field.wire_type))
        yield (
            f"{path}.{field.field_number}" if path else str(field.field_number),
            f"is not a field of {name} ({wire}); fields the gateway does not know are refused",
        )
    if not nested:
        return
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None or descriptor.message_type.GetOptions().map_entry:
            continue  # map entries keep no unknown fields of their own
        child = f"{path}.{descriptor.name}" if path else descriptor.name
        if descriptor.is_repeated:
            for i, item in enumerate(value[:MAX_REPEATED]):
                yield from unknown_fields_of(item, f"{child}[{i}]")
        else:
            yield from unknown_fields_of(value, child)
