"""Identifiers: 26 Crockford base32 characters, sortable by creation time."""

from __future__ import annotations

import time
from unittest import mock

from chatsphere import ids
from chatsphere.ids import new_id

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _reference(value: int) -> str:
    """ULID text of a 128-bit value, five bits per character, most significant first."""
    return "".join(_ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def test_an_id_is_26_characters_of_the_alphabet() -> None:
    made = {new_id() for _ in range(1000)}
    assert len(made) == 1000
    assert all(len(i) == 26 and set(i) <= set(_ALPHABET) for i in made)


def test_the_text_encodes_the_time_and_the_random_bits_exactly() -> None:
    for random_bytes in (bytes(10), b"\xff" * 10, bytes(range(10))):
        with (
            mock.patch.object(ids.time, "time_ns", return_value=1_764_000_000_123_456_789),
            mock.patch.object(ids.os, "urandom", return_value=random_bytes),
        ):
            made = new_id()
        value = 1_764_000_000_123 << 80 | int.from_bytes(random_bytes, "big")
        assert made == _reference(value)
        assert (
            int(made.translate(str.maketrans(_ALPHABET, "0123456789ABCDEFGHIJKLMNOPQRSTUV")), 32)
            == value
        )


def test_ids_sort_by_creation_time() -> None:
    first = new_id()
    time.sleep(0.002)
    assert new_id() > first
