"""Task ids: what the gateway issues is what the store's screen takes for an id."""

from __future__ import annotations

import os

import pytest

from conveyor.ids import _ALPHABET, is_task_id, new_task_id


def test_every_issued_id_is_an_id_and_sorts_by_time() -> None:
    ids = [new_task_id(now_ms=ms) for ms in (1, 2, 1_000_000, 2**47)]
    assert all(is_task_id(task_id) for task_id in ids)
    assert ids == sorted(ids)


def test_an_id_is_26_characters_of_the_alphabet_only() -> None:
    issued = new_task_id()
    for code in range(0x3000):  # ASCII, Latin, other scripts' digits (which \\d would take)
        candidate = issued[:-1] + chr(code)
        assert is_task_id(candidate) == (chr(code) in _ALPHABET), repr(chr(code))
    for text in ("", issued[:-1], issued + "0", issued + "\n", issued.upper()):
        assert not is_task_id(text), repr(text)


def test_an_id_holds_its_milliseconds_then_80_random_bits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "urandom", lambda n: bytes(range(1, n + 1)))
    task_id = new_task_id(now_ms=1_764_979_200_123)
    value = 0
    for char in task_id:
        value = value * 32 + _ALPHABET.index(char)
    assert value >> 80 == 1_764_979_200_123
    assert value & (2**80 - 1) == int.from_bytes(bytes(range(1, 11)), "big")
    assert new_task_id(now_ms=0).startswith("0000000000")
    assert new_task_id(now_ms=2**48 - 1).startswith("7zzzzzzzzz")
