"""Time as a dependency, so rules that depend on it are testable without sleeping."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
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


_SECOND = timedelta(seconds=1)
_MILLISECOND = timedelta(milliseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)
#: ".000" to ".999": the milliseconds' text by table, not by format.
_MILLIS = tuple(f".{ms:03d}" for ms in range(1000))
#: The last whole second seen: its start, its end, its text and its epoch milliseconds,
#: in one tuple, so that the loop and the writer thread, which both format, never pair
#: one second with another's text. It starts empty (no moment lies in [latest, latest)).
_last_second: tuple[datetime, datetime, str, int] = (_LATEST, _LATEST, "", 0)


def _second_of(moment: datetime) -> tuple[datetime, datetime, str, int]:
    """The cached second holding ``moment`` (UTC), made and remembered if it is new."""
    global _last_second  # a one-entry cache: every message's view and row use "now"
    second = _last_second
    # Two comparisons of datetimes find it: exact, and cheaper than converting the
    # moment to a timestamp.
    if not second[0] <= moment < second[1]:
        start = moment.replace(microsecond=0)
        end = start + _SECOND if start < _LATEST - _SECOND else _LATEST
        text = start.isoformat(timespec="seconds")[:-6]  # drop "+00:00"
        second = _last_second = (start, end, text, (start - _EPOCH) // _MILLISECOND)
    return second


def isoformat(moment: datetime) -> str:
    """RFC 3339 with millisecond precision and a ``Z`` suffix, as the wire uses."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return _second_of(moment)[2] + _MILLIS[moment.microsecond // 1000] + "Z"


def epoch_ms(moment: datetime) -> int:
    """Whole milliseconds since 1970-01-01 UTC (rounded down), exactly.

    A naive moment is local time, as ``datetime.timestamp`` takes it (which, unlike
    ``astimezone``, reads a time in a daylight-saving gap with the offset before it).
    """
    if moment.tzinfo is None:
        return int(moment.replace(microsecond=0).timestamp()) * 1000 + moment.microsecond // 1000
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return _second_of(moment)[3] + moment.microsecond // 1000


def from_epoch_ms(value: int) -> datetime:
    """The UTC moment ``value`` milliseconds after 1970-01-01 (exact: the inverse of
    :func:`epoch_ms` for a moment in whole milliseconds)."""
    return _EPOCH + timedelta(milliseconds=value)
