"""gateway/heartbeat.py: jittered pings from a timing wheel; unanswered ones close with 4001.

Most tests drive the wheel by hand with a fake clock (``Heartbeat.walk``), so times are
exact; the last few run the walker task on the real loop and only wait for an outcome
(with a generous bound), never asserting how long something took.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from itertools import pairwise

import pytest

from chatsphere.auth import Principal
from chatsphere.gateway.connection import Connection
from chatsphere.gateway.heartbeat import SLOT_SECONDS, Heartbeat
from chatsphere.protocol.closecodes import CloseCode
from tests.unit.fakes import FakeTransport

WAIT = 10.0  # an upper bound for "eventually", never a measurement
T0 = 1000.0


class CountingTransport(FakeTransport):
    def __init__(self) -> None:
        super().__init__()
        self.closes: list[tuple[int, str]] = []
        self.closed_event = asyncio.Event()

    def close(self, code: int, reason: str) -> None:
        super().close(code, reason)
        self.closes.append((code, reason))
        self.closed_event.set()


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class FakePinger:
    """Records pings (with the clock's time); pongs come when the test says so, or at once."""

    def __init__(self, clock: Callable[[], float], *, answer: bool = True) -> None:
        self._clock = clock
        self.answer = answer
        self.pings: dict[str, list[float]] = {}
        self.unanswered: set[Connection] = set()

    def send_ping(self, conn: Connection) -> None:
        assert conn.transport.is_open(), "pinged a closed connection"
        assert conn not in self.unanswered, "a second ping while one is outstanding"
        self.pings.setdefault(conn.connection_id, []).append(self._clock())
        if not self.answer:
            self.unanswered.add(conn)

    def pong(self, conn: Connection) -> None:
        self.unanswered.discard(conn)

    def answered(self, conn: Connection) -> bool:
        return conn not in self.unanswered

    def count(self, conn: Connection) -> int:
        return len(self.pings.get(conn.connection_id, []))


def connection(conn_id: str = "c1") -> tuple[Connection, CountingTransport]:
    transport = CountingTransport()
    return Connection(conn_id, Principal("alice"), transport, 1_000_000), transport


def wheel(
    interval: float, timeout: float, *, answer: bool = True
) -> tuple[Heartbeat, FakePinger, FakeClock]:
    clock = FakeClock()
    pinger = FakePinger(clock, answer=answer)
    return Heartbeat(interval, timeout, pinger, clock=clock), pinger, clock


def run_until(beat: Heartbeat, clock: FakeClock, until: float, step: float = 1.0) -> None:
    """Walk the wheel as its task would: at the start of each slot (or every ``step``)."""
    while clock.now + step <= until:
        clock.now += step
        beat.walk(clock.now)


def walk_to_first_ping(
    beat: Heartbeat, pinger: FakePinger, clock: FakeClock, conn: Connection
) -> float:
    """Walk second by second until ``conn`` is pinged; the time of that ping."""
    while not pinger.count(conn):
        run_until(beat, clock, clock.now + 1.0)
    return float(pinger.pings[conn.connection_id][0])


# The wheel, on a fake clock


def test_first_pings_are_jittered_within_the_first_interval() -> None:
    beat, pinger, clock = wheel(interval=25.0, timeout=20.0)
    conns = [connection(f"c{i}")[0] for i in range(1000)]
    for conn in conns:
        beat.add(conn)
    run_until(beat, clock, T0 + 25.0)
    firsts = [pinger.pings[c.connection_id][0] for c in conns]
    assert all(T0 < t <= T0 + 25.0 for t in firsts)
    per_second = [firsts.count(T0 + s) for s in range(1, 26)]
    # uniform(0.1, 1.0) × 25 s: 22.5 one-second slots, ~44 each; never one herd.
    assert sum(1 for n in per_second if n) >= 20
    assert max(per_second) < 150
    assert per_second[0] == 0  # nothing sooner than 0.1 × interval


def test_pings_repeat_every_interval_within_ten_percent() -> None:
    beat, pinger, clock = wheel(interval=25.0, timeout=20.0)
    pairs = [connection(f"c{i}") for i in range(200)]
    conns = [conn for conn, _ in pairs]
    for conn in conns:
        beat.add(conn)
    run_until(beat, clock, T0 + 300.0)
    gaps = [
        later - earlier for c in conns for earlier, later in pairwise(pinger.pings[c.connection_id])
    ]
    assert len(gaps) >= 200 * 10
    # ±10 % of 25 s is 22.5…27.5 s; pings go out when their one-second slot is walked.
    assert min(gaps) >= 22.5 - 1
    assert max(gaps) <= 27.5 + 1
    assert max(gaps) - min(gaps) >= 3  # jittered, not a fixed period
    assert beat.timeouts == 0
    assert all(transport.closes == [] for _, transport in pairs)


def test_a_silent_connection_is_closed_with_4001_once_timeout_after_its_ping() -> None:
    # A deadline inside a slot (ping + 20.5 s): the slot is walked before it has passed.
    beat, pinger, clock = wheel(interval=25.0, timeout=20.5, answer=False)
    conn, transport = connection()
    beat.add(conn)
    pinged_at = walk_to_first_ping(beat, pinger, clock, conn)
    # Walk in quarter seconds so an early close would be seen.
    run_until(beat, clock, pinged_at + 20.25, step=0.25)
    assert transport.closes == []
    run_until(beat, clock, pinged_at + 21.5, step=0.25)
    assert transport.closes == [(CloseCode.HEARTBEAT_TIMEOUT, "no pong")]
    assert beat.timeouts == 1
    run_until(beat, clock, clock.now + 200.0)
    assert transport.closes == [(CloseCode.HEARTBEAT_TIMEOUT, "no pong")]  # exactly once
    assert beat.timeouts == 1
    assert pinger.count(conn) == 1
    assert beat._slots == {}
    assert beat._beats == {}


def test_a_pong_before_the_deadline_keeps_the_connection() -> None:
    beat, pinger, clock = wheel(interval=25.0, timeout=20.5, answer=False)
    conn, transport = connection()
    beat.add(conn)
    pongs = 0
    until = T0 + 200.0
    while clock.now < until:
        run_until(beat, clock, clock.now + 0.5, step=0.5)
        pings = pinger.pings.get("c1", [])
        if conn in pinger.unanswered and clock.now >= pings[-1] + 20.0:
            pinger.pong(conn)  # late (after its check slot was walked), but in time
            pongs += 1
    assert transport.closes == []
    assert beat.timeouts == 0
    assert pongs == pinger.count(conn) - (1 if conn in pinger.unanswered else 0)
    assert pongs >= 4


def test_no_second_ping_while_one_is_outstanding() -> None:
    # timeout > interval: the next ping would be due before the deadline.
    beat, pinger, clock = wheel(interval=2.0, timeout=10.0, answer=False)
    conn, transport = connection()
    beat.add(conn)
    pinged_at = walk_to_first_ping(beat, pinger, clock, conn)
    run_until(beat, clock, pinged_at + 9.0)  # FakePinger fails on a second ping
    assert transport.closes == []
    run_until(beat, clock, pinged_at + 11.0)
    assert transport.closes == [(CloseCode.HEARTBEAT_TIMEOUT, "no pong")]
    run_until(beat, clock, clock.now + 30.0)
    assert pinger.count(conn) == 1
    assert beat.timeouts == 1


def test_remove_stops_pings() -> None:
    beat, pinger, clock = wheel(interval=5.0, timeout=3.0)
    before, _ = connection("before-first-ping")
    after, _ = connection("after-first-ping")
    kept, _ = connection("kept")
    for conn in (before, after, kept):
        beat.add(conn)
    beat.remove(before)
    while not pinger.count(after):
        run_until(beat, clock, clock.now + 1.0)
    beat.remove(after)
    beat.remove(after)  # twice is harmless
    run_until(beat, clock, clock.now + 60.0)
    assert pinger.count(before) == 0
    assert pinger.count(after) == 1
    assert pinger.count(kept) >= 10
    assert set(beat._beats) == {kept}


def test_remove_of_an_unanswered_connection_prevents_its_close() -> None:
    beat, pinger, clock = wheel(interval=5.0, timeout=3.0, answer=False)
    conn, transport = connection()
    beat.add(conn)
    walk_to_first_ping(beat, pinger, clock, conn)
    beat.remove(conn)
    run_until(beat, clock, clock.now + 60.0)
    assert transport.closes == []
    assert beat.timeouts == 0
    assert beat._slots == {}


def test_sub_second_intervals_ping_repeatedly() -> None:
    # Shorter than a slot: re-placed into a slot the walker has already passed, the
    # connection would never be pinged again.
    beat, pinger, clock = wheel(interval=0.05, timeout=0.05)
    conn, transport = connection()
    beat.add(conn)
    run_until(beat, clock, T0 + 10.0, step=0.1)
    pings = pinger.pings["c1"]
    assert len(pings) >= 90
    assert len({round(t / SLOT_SECONDS) for t in pings}) == len(pings)  # one per slot at most
    assert transport.closes == []


@pytest.mark.parametrize("stall", [5.0, 500.0])
def test_a_catch_up_walk_pings_each_connection_once(stall: float) -> None:
    beat, pinger, clock = wheel(interval=0.5, timeout=0.5)
    conns = [connection(f"c{i}")[0] for i in range(10)]
    for conn in conns:
        beat.add(conn)
    clock.now += stall  # a stalled loop: several slots due in one walk
    beat.walk(clock.now)
    assert [pinger.count(c) for c in conns] == [1] * 10
    run_until(beat, clock, clock.now + 3.0)
    assert [pinger.count(c) for c in conns] == [4] * 10


def test_a_closed_connection_is_not_pinged_and_leaves_the_wheel() -> None:
    beat, pinger, clock = wheel(interval=5.0, timeout=3.0)
    closed, closed_transport = connection("closed")
    open_, _ = connection("open")
    beat.add(closed)
    beat.add(open_)
    closed_transport.close(1000, "bye")
    run_until(beat, clock, T0 + 30.0)
    assert pinger.count(closed) == 0
    assert pinger.count(open_) >= 4
    assert set(beat._beats) == {open_}
    assert closed_transport.closes == [(1000, "bye")]


def test_a_failing_ping_drops_that_connection_only() -> None:
    beat, pinger, clock = wheel(interval=5.0, timeout=3.0)
    broken, _ = connection("broken")
    fine, _ = connection("fine")
    real_send = pinger.send_ping

    def send_ping(conn: Connection) -> None:
        if conn is broken:
            raise RuntimeError("socket gone")
        real_send(conn)

    pinger.send_ping = send_ping  # type: ignore[method-assign]
    beat.add(broken)
    beat.add(fine)
    run_until(beat, clock, T0 + 30.0)
    assert pinger.count(fine) >= 4
    assert set(beat._beats) == {fine}


def test_first_pings_are_spread_over_many_slots() -> None:
    beat, _, clock = wheel(interval=25.0, timeout=20.0)
    for i in range(1000):
        beat.add(connection(f"c{i}")[0])
    slots = beat._slots
    assert sum(len(members) for members in slots.values()) == 1000
    assert len(slots) > 200  # uniform(0.1, 1.0) x 25 s: 225 slots of 100 ms, ~4.4 each
    assert max(len(members) for members in slots.values()) < 20
    assert all(clock.now <= slot * SLOT_SECONDS <= clock.now + 25.0 for slot in slots)


def test_no_walk_sends_a_burst_of_pings() -> None:
    # A walk runs on the event loop: 10,000 connections at the default interval must
    # not be pinged hundreds at a time (one-second slots sent ~400 per walk here).
    beat, pinger, clock = wheel(interval=25.0, timeout=20.0)
    conns = [connection(f"c{i}")[0] for i in range(10_000)]
    for conn in conns:
        beat.add(conn)
    sent = []
    while clock.now < T0 + 60.0:
        before = sum(len(p) for p in pinger.pings.values())
        clock.now += SLOT_SECONDS
        beat.walk(clock.now)
        sent.append(sum(len(p) for p in pinger.pings.values()) - before)
    assert all(pinger.count(c) >= 2 for c in conns)
    assert max(sent) < 100, max(sent)


# The walker task, on the real loop


HeartbeatFactory = Callable[[FakePinger], Heartbeat]


@pytest.fixture
async def heartbeat() -> AsyncIterator[HeartbeatFactory]:
    started: list[Heartbeat] = []

    def factory(pinger: FakePinger) -> Heartbeat:
        beat = Heartbeat(interval=0.05, timeout=0.05, pinger=pinger)
        beat.start()
        started.append(beat)
        return beat

    yield factory
    for beat in started:
        await beat.close()
    await asyncio.sleep(0)  # let the cancellations run


def loop_pinger(*, answer: bool) -> FakePinger:
    return FakePinger(asyncio.get_running_loop().time, answer=answer)


async def test_the_walker_closes_a_silent_connection_with_4001(
    heartbeat: HeartbeatFactory,
) -> None:
    beat = heartbeat(loop_pinger(answer=False))
    conn, transport = connection()
    beat.add(conn)
    await asyncio.wait_for(transport.closed_event.wait(), WAIT)
    assert transport.closes == [(CloseCode.HEARTBEAT_TIMEOUT, "no pong")]
    assert beat.timeouts == 1


async def test_the_walker_keeps_pinging_an_answering_connection(
    heartbeat: HeartbeatFactory,
) -> None:
    pinger = loop_pinger(answer=True)
    beat = heartbeat(pinger)
    conn, transport = connection()
    beat.add(conn)

    async def pinged_twice() -> None:
        while pinger.count(conn) < 2:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(pinged_twice(), WAIT)
    assert transport.closed is None
    assert beat.timeouts == 0


async def test_the_walker_skips_removed_connections(heartbeat: HeartbeatFactory) -> None:
    pinger = loop_pinger(answer=False)
    beat = heartbeat(pinger)
    gone, gone_transport = connection("gone")
    kept, kept_transport = connection("kept")
    beat.add(gone)
    beat.add(kept)
    beat.remove(gone)
    await asyncio.wait_for(kept_transport.closed_event.wait(), WAIT)
    assert pinger.count(gone) == 0
    assert gone_transport.closed is None
