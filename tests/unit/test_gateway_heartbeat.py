"""gateway/heartbeat.py: unanswered pings close with 4001; first pings are spread out.

These are behaviour tests: they wait for an outcome (with a generous bound) and never
assert how long something took.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from chatsphere.auth import Principal
from chatsphere.gateway.connection import Connection
from chatsphere.gateway.heartbeat import Heartbeat
from chatsphere.protocol.closecodes import CloseCode
from tests.unit.fakes import FakeTransport

WAIT = 10.0  # an upper bound for "eventually", never a measurement


class SignallingTransport(FakeTransport):
    def __init__(self) -> None:
        super().__init__()
        self.closed_event = asyncio.Event()

    def close(self, code: int, reason: str) -> None:
        super().close(code, reason)
        self.closed_event.set()


class Pinger:
    """Records pings; answers them (a resolved pong) or never (a silent peer)."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.pings: dict[str, int] = {}
        self.pinged = asyncio.Event()

    async def __call__(self, conn: Connection) -> Awaitable[float]:
        self.pings[conn.connection_id] = self.pings.get(conn.connection_id, 0) + 1
        self.pinged.set()
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if self.answer:
            waiter.set_result(0.001)
        return waiter


def connection(conn_id: str = "c1") -> tuple[Connection, SignallingTransport]:
    transport = SignallingTransport()
    return Connection(conn_id, Principal("alice"), transport, 1_000_000), transport


HeartbeatFactory = Callable[[Pinger], Heartbeat]


@pytest.fixture
async def heartbeat() -> AsyncIterator[HeartbeatFactory]:
    started: list[Heartbeat] = []

    def factory(pinger: Pinger) -> Heartbeat:
        beat = Heartbeat(interval=0.05, timeout=0.05, ping=pinger)
        beat.start()
        started.append(beat)
        return beat

    yield factory
    for beat in started:
        await beat.close()
    await asyncio.sleep(0)  # let the cancellations run


async def test_a_silent_connection_is_closed_with_4001(heartbeat: HeartbeatFactory) -> None:
    beat = heartbeat(Pinger(answer=False))
    conn, transport = connection()
    beat.add(conn)
    await asyncio.wait_for(transport.closed_event.wait(), WAIT)
    assert transport.closed is not None
    assert transport.closed[0] == CloseCode.HEARTBEAT_TIMEOUT
    assert beat.timeouts == 1


async def test_an_answering_connection_stays_open_and_keeps_being_pinged(
    heartbeat: HeartbeatFactory,
) -> None:
    pinger = Pinger(answer=True)
    beat = heartbeat(pinger)
    conn, transport = connection()
    beat.add(conn)

    async def pinged_twice() -> None:
        while pinger.pings.get("c1", 0) < 2:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(pinged_twice(), WAIT)
    assert transport.closed is None
    assert beat.timeouts == 0


async def test_a_removed_connection_is_not_pinged(heartbeat: HeartbeatFactory) -> None:
    pinger = Pinger(answer=False)
    beat = heartbeat(pinger)
    gone, gone_transport = connection("gone")
    kept, kept_transport = connection("kept")
    beat.add(gone)
    beat.add(kept)
    beat.remove(gone)
    beat.remove(gone)  # twice is harmless
    await asyncio.wait_for(kept_transport.closed_event.wait(), WAIT)
    assert "gone" not in pinger.pings
    assert gone_transport.closed is None


async def test_a_closed_connection_is_not_pinged(heartbeat: HeartbeatFactory) -> None:
    pinger = Pinger(answer=False)
    beat = heartbeat(pinger)
    closed, closed_transport = connection("closed")
    closed_transport.close(1000, "bye")
    probe, probe_transport = connection("probe")
    beat.add(closed)
    beat.add(probe)
    await asyncio.wait_for(probe_transport.closed_event.wait(), WAIT)
    assert "closed" not in pinger.pings


async def test_first_pings_are_spread_over_many_slots() -> None:
    beat = Heartbeat(interval=25.0, timeout=20.0, ping=Pinger(answer=True))
    conns = [connection(f"c{i}")[0] for i in range(1000)]
    for conn in conns:
        beat.add(conn)
    slots = beat._slots
    assert sum(len(members) for members in slots.values()) == 1000
    assert len(slots) > 10
    assert max(len(members) for members in slots.values()) < 200
    now = asyncio.get_running_loop().time()
    assert all(now <= slot <= now + 25.0 for slot in slots)
