"""Time as a dependency, so rules that depend on it are testable without sleeping."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Wall-clock and monotonic time."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary point; only differences mean anything."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


#: The last whole second formatted, with its text: one tuple, so that the loop and the
#: writer thread, which both format, never pair one second with another's text.
_last_second: tuple[float, str] = (float("nan"), "")
_EXACT_SECONDS = 2.0**34


def isoformat(moment: datetime) -> str:
    """RFC 3339 with millisecond precision and a ``Z`` suffix, as the wire uses."""
    global _last_second  # a one-entry cache: every message's view formats "now"
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # timestamp() is rounded once from exact integers, and a fraction is at most
    # 0.999999 s: within 2**34 s of 1970 (years 1425 to 2514) half a float's step is
    # under a microsecond, so the floor is the exact second. Outside, no cache.
    second = moment.timestamp() // 1
    if not -_EXACT_SECONDS < second < _EXACT_SECONDS:
        return moment.isoformat(timespec="milliseconds")[:-6] + "Z"  # drop "+00:00"
    cached = _last_second
    if cached[0] != second:
        cached = _last_second = (second, moment.isoformat(timespec="seconds")[:-6])
    return f"{cached[1]}.{moment.microsecond // 1000:03d}Z"
