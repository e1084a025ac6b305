"""Identifiers: time-sortable, URL-safe, 26 characters."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
# Two characters per 10 bits: half the lookups of a character at a time.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_SHIFTS = tuple(range(120, -1, -10))  # 13 pairs = 26 characters, most significant first


def new_id() -> str:
    """A new ULID-shaped id: 48 bits of milliseconds then 80 random bits.

    Ids sort by creation time (to the millisecond), which keeps B-tree inserts
    append-mostly and makes ids readable in logs.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in _SHIFTS])
