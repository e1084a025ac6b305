"""Identifiers: time-sortable, URL-safe, 26 characters."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def new_id() -> str:
    """A new ULID-shaped id: 48 bits of milliseconds then 80 random bits.

    Ids sort by creation time (to the millisecond), which keeps B-tree inserts
    append-mostly and makes ids readable in logs.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))
