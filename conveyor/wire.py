"""Protobuf wire encoding by hand, for messages written as bytes without building them:
a stream's updates serialized once and framed into the message that carries them."""

from __future__ import annotations


def varint(value: int) -> bytes:
    """``value`` (not negative) as a base-128 varint."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_delimited(number: int, data: bytes) -> bytes:
    """Field ``number`` (below 16) holding ``data``: a message, bytes or a string."""
    return bytes((number << 3 | 2,)) + varint(len(data)) + data
