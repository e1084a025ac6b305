"""Small hand-written fakes shared by the unit and contract suites.

They stand in for things that cannot run deterministically here (wall time, a
socket); everything that can run for real (SQLite, PostgreSQL) is used for real.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chatsphere.auth import Principal
from chatsphere.gateway.connection import CLOSED, FULL, QUEUED, Connection


class FakeClock:
    """A :class:`~chatsphere.clock.Clock` that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2024, 1, 1, tzinfo=UTC)
        self._mono = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds


class FakeTransport:
    """A :class:`~chatsphere.gateway.connection.Transport` that records what it is given."""

    def __init__(self, buffered: int = 0) -> None:
        self.frames: list[bytes] = []
        self.closed: tuple[int, str] | None = None
        self.buffered_bytes = buffered

    def offer(self, data: bytes, limit: int) -> int:
        if self.closed is not None:
            return CLOSED
        if self.buffered_bytes > limit:
            return FULL
        self.frames.append(data)
        return QUEUED

    def buffered(self) -> int:
        return self.buffered_bytes

    def is_open(self) -> bool:
        return self.closed is None

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def make_connection(
    user_id: str, connection_id: str | None = None, *, max_buffer: int = 1_000_000
) -> tuple[Connection, FakeTransport]:
    transport = FakeTransport()
    conn = Connection(connection_id or f"{user_id}-conn", Principal(user_id), transport, max_buffer)
    return conn, transport
