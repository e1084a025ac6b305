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


def test_the_text_encodes_the_time_and_the_random_bits_exactly() -> None:
    for random_bytes in (bytes(10), b"\xff" * 10, bytes(range(10))):
        with (
            mock.patch.object(ids.time, "time_ns", return_value=1_764_000_000_123_456_789),
            mock.patch.object(ids._random, "take", return_value=int.from_bytes(random_bytes)),
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


def test_random_bits_come_from_the_os_a_pool_at_a_time_and_never_repeat() -> None:
    # os.urandom releases the GIL; called once per id it stalled the event loop behind
    # the writer thread. The pool takes 4 KiB at a time and hands out fresh slices.
    pool = ids._RandomPool()
    with mock.patch.object(ids.os, "urandom", wraps=os.urandom) as urandom:
        taken = [pool.take() for _ in range(1_000)]
    assert urandom.call_count == 2  # 409 slices per 4 KiB: two refills for 1,000
    assert len(set(taken)) == len(taken)
    assert all(0 <= t < 1 << 80 for t in taken)


def test_threads_never_get_the_same_slice() -> None:
    pool = ids._RandomPool()
    seen: list[list[int]] = [[] for _ in range(8)]

    def take(into: list[int]) -> None:
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
        os.write(write, ids._random.take().to_bytes(10, "big"))
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    childs = int.from_bytes(os.read(read, 10), "big")
    os.close(read)
    assert childs != ids._random.take()
