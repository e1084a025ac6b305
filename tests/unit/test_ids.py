"""Identifiers: 26 Crockford base32 characters, sortable by creation time."""

from __future__ import annotations

import os
import sys
import threading
import time
from unittest import mock

import pytest

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


def _value_of(text: str) -> int:
    return int(text.translate(str.maketrans(_ALPHABET, "0123456789ABCDEFGHIJKLMNOPQRSTUV")), 32)


def test_the_text_encodes_the_time_and_the_random_bits_exactly() -> None:
    pattern = bytes(range(256)) * 16  # every byte value, so every character, appears
    with mock.patch.object(ids.os, "urandom", return_value=pattern):
        pool = ids._RandomPool()
    for ms in (1_764_000_000_123, 0, 2**48 - 1):
        for start in range(0, 256, 16):
            chunk = pattern[start : start + 16]
            bits = 0
            for byte in chunk:  # each byte's low five bits, first byte most significant
                bits = bits << 5 | byte & 31
            with (
                mock.patch.object(ids.time, "time_ns", return_value=ms * 1_000_000 + 456_789),
                mock.patch.object(ids, "_random", pool),
            ):
                made = new_id()
            value = ms << 80 | bits
            assert made == _reference(value)
            assert _value_of(made) == value


def test_the_time_characters_follow_the_clock_across_milliseconds() -> None:
    # The time's ten characters are remembered for one millisecond only.
    for ms in (1_764_000_000_123, 1_764_000_000_124, 1_764_000_000_123, 1_764_000_001_000):
        with mock.patch.object(ids.time, "time_ns", return_value=ms * 1_000_000):
            made = new_id()
        assert _value_of(made) >> 80 == ms


def test_every_character_is_equally_likely_from_uniform_bytes() -> None:
    # 256 byte values onto 32 characters: each character from exactly 8 of them.
    counts = {c: 0 for c in _ALPHABET}
    for char in bytes(range(256)).translate(ids._CHAR_OF_BYTE).decode():
        counts[char] += 1
    assert set(counts.values()) == {8}


def test_ids_sort_by_creation_time() -> None:
    first = new_id()
    time.sleep(0.002)
    assert new_id() > first


def test_random_bits_come_from_the_os_a_pool_at_a_time_and_never_repeat() -> None:
    # os.urandom releases the GIL; called once per id it stalled the event loop behind
    # the writer thread. The pool takes 4 KiB at a time and hands out fresh slices.
    pool = ids._RandomPool()
    with mock.patch.object(ids.os, "urandom", wraps=os.urandom) as urandom:
        taken = [pool.take() for _ in range(1_000)]
    assert urandom.call_count == 3  # 256 slices per 4 KiB: three refills for 1,000
    assert len(set(taken)) == len(taken)
    assert all(len(t) == 16 and set(t) <= set(_ALPHABET) for t in taken)


def test_threads_never_get_the_same_slice() -> None:
    pool = ids._RandomPool()
    seen: list[list[str]] = [[] for _ in range(8)]

    def take(into: list[str]) -> None:
        for _ in range(2_000):
            into.append(pool.take())

    threads = [threading.Thread(target=take, args=(s,)) for s in seen]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns between almost any two bytecodes
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    everything = [v for s in seen for v in s]
    assert len(set(everything)) == len(everything) == 16_000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_does_not_reuse_its_parents_random_bits() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next slice and leave at once
        os.write(write, ids._random.take().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    childs = os.read(read, 16).decode()
    os.close(read)
    assert childs != ids._random.take()
