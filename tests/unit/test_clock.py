"""The wire's timestamp format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from chatsphere.clock import isoformat


def test_utc_moments_get_milliseconds_and_a_z_suffix() -> None:
    assert (
        isoformat(datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)) == "2026-01-02T03:04:05.678Z"
    )
    assert isoformat(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000Z"


def test_other_offsets_are_converted_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert isoformat(datetime(2026, 1, 2, 3, 4, 5, tzinfo=plus_two)) == "2026-01-02T01:04:05.000Z"
    assert (
        isoformat(datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(0))))
        == "2026-01-02T03:04:05.000Z"
    )
