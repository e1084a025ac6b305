"""The wire's timestamp format."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from chatsphere.clock import epoch_ms, isoformat

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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


def _reference(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def test_the_cached_second_never_leaks_into_another() -> None:
    # Neighbouring moments around second boundaries, in and out of order, and random
    # ones over centuries: each must format as datetime.isoformat does.
    edge = datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    moments = [edge, edge + timedelta(microseconds=1), edge, edge - timedelta(seconds=1)]
    moments += [datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)]
    latest = datetime.max.replace(tzinfo=UTC)  # the last second has no next one
    moments += [latest, latest - timedelta(seconds=1), latest, datetime.min.replace(tzinfo=UTC)]
    for year in (1, 1400, 1969, 2038, 2500, 2600, 9998):  # far ones round to the next second
        last = datetime(year, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
        moments += [last, last + timedelta(microseconds=1)]
    rng = random.Random(4)
    start = datetime(1970, 1, 1, tzinfo=UTC)
    moments += [start + timedelta(microseconds=rng.randrange(10**17)) for _ in range(20_000)]
    for moment in moments:
        assert isoformat(moment) == _reference(moment), moment
        assert epoch_ms(moment) == (moment - _EPOCH) // timedelta(milliseconds=1), moment


def test_epoch_ms_of_other_offsets() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert epoch_ms(datetime(1970, 1, 1, 2, 0, 0, 1_999, tzinfo=plus_two)) == 1
    assert epoch_ms(datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)) == -1
    # Rounded down exactly, where the float product timestamp() * 1000 is not.
    assert epoch_ms(datetime(2039, 7, 13, 7, 16, 5, 982_000, tzinfo=UTC)) == 2_194_154_165_982


@pytest.fixture
def new_york() -> Iterator[None]:
    """Local time with daylight saving for the test (naive moments are local time)."""
    if not hasattr(time, "tzset"):
        pytest.skip("no tzset here")
    before = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


@pytest.mark.usefixtures("new_york")
def test_epoch_ms_reads_naive_moments_as_local_time_as_timestamp_does() -> None:
    for naive in (
        datetime(2026, 5, 6, 7, 8, 9, 123_456),  # summer time
        datetime(2026, 1, 6, 7, 8, 9, 123_456),  # winter time
        datetime(2026, 3, 8, 2, 30, 0, 250_000),  # in the spring-forward gap
        datetime(2026, 3, 8, 2, 30, 0, 250_000, fold=1),
        datetime(2026, 11, 1, 1, 30, 0, 999_999),  # in the repeated autumn hour
        datetime(2026, 11, 1, 1, 30, 0, 999_999, fold=1),
    ):
        assert epoch_ms(naive) == round(naive.timestamp() * 1_000_000) // 1000, naive
    summer = datetime(2026, 5, 6, 7, 8, 9)
    assert epoch_ms(summer) == epoch_ms(summer.replace(tzinfo=UTC) + timedelta(hours=4))
