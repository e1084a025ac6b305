"""gateway/connection.py: bounded writes and the replay seam used by join and resume."""

from __future__ import annotations

from chatsphere.ports.bus import Delivery
from chatsphere.protocol.closecodes import CloseCode
from tests.unit.fakes import make_connection

CHANNEL = "room:r1"


def live(seq: int | None, channel: str = CHANNEL) -> Delivery:
    return Delivery(channel, f"{channel}#{seq}".encode(), seq)


# -- writes ----------------------------------------------------------------------------


def test_write_queues_the_frame() -> None:
    conn, transport = make_connection("alice")
    assert conn.write(b"one") is True
    assert conn.write(b"two") is True
    assert transport.frames == [b"one", b"two"]
    assert transport.closed is None


def test_a_full_buffer_drops_the_frame_and_closes_with_4000() -> None:
    conn, transport = make_connection("alice", max_buffer=100)
    transport.buffered_bytes = 101
    assert conn.write(b"late") is False
    assert transport.frames == []
    assert transport.closed is not None
    assert transport.closed[0] == CloseCode.SLOW_CONSUMER


def test_a_buffer_at_the_limit_is_still_accepted() -> None:
    conn, transport = make_connection("alice", max_buffer=100)
    transport.buffered_bytes = 100
    assert conn.write(b"ok") is True
    assert transport.frames == [b"ok"]


def test_nothing_is_written_after_close() -> None:
    conn, transport = make_connection("alice", max_buffer=10)
    transport.buffered_bytes = 11
    conn.write(b"x")
    transport.buffered_bytes = 0
    assert conn.write(b"y") is False
    assert transport.frames == []


def test_close_is_idempotent() -> None:
    conn, transport = make_connection("alice")
    conn.close(CloseCode.GOING_AWAY, "bye")
    conn.close(CloseCode.INTERNAL_ERROR, "again")
    assert transport.closed == (CloseCode.GOING_AWAY, "bye")


def test_deliver_writes_live_frames() -> None:
    conn, transport = make_connection("alice")
    conn.deliver(live(1))
    conn.deliver(live(None))
    assert transport.frames == [b"room:r1#1", b"room:r1#None"]


# -- replay seam -----------------------------------------------------------------------


def test_begin_replay_holds_sequenced_deliveries_of_that_channel() -> None:
    conn, transport = make_connection("alice")
    conn.begin_replay(CHANNEL)
    assert conn.is_replaying(CHANNEL)
    conn.deliver(live(5))
    conn.deliver(live(6))
    assert transport.frames == []


def test_end_replay_releases_only_newer_events_in_order() -> None:
    conn, transport = make_connection("alice")
    conn.begin_replay(CHANNEL)
    for seq in (3, 4, 5, 6, 7):
        conn.deliver(live(seq))
    transport.frames.append(b"replayed 1..5")  # what the replay itself wrote
    assert conn.end_replay(CHANNEL, 5) == 2
    assert transport.frames == [b"replayed 1..5", b"room:r1#6", b"room:r1#7"]
    assert not conn.is_replaying(CHANNEL)
    conn.deliver(live(8))
    assert transport.frames[-1] == b"room:r1#8"


def test_ephemeral_deliveries_are_not_held() -> None:
    conn, transport = make_connection("alice")
    conn.begin_replay(CHANNEL)
    conn.deliver(live(None))
    conn.deliver(live(9))
    assert transport.frames == [b"room:r1#None"]
    conn.end_replay(CHANNEL, 0)
    assert transport.frames == [b"room:r1#None", b"room:r1#9"]


def test_other_channels_flow_while_one_replays() -> None:
    conn, transport = make_connection("alice")
    conn.begin_replay(CHANNEL)
    conn.deliver(live(1, "room:r2"))
    assert transport.frames == [b"room:r2#1"]
    assert not conn.is_replaying("room:r2")


def test_two_channels_replay_independently() -> None:
    conn, transport = make_connection("alice")
    conn.begin_replay("room:a")
    conn.begin_replay("room:b")
    conn.deliver(live(2, "room:a"))
    conn.deliver(live(3, "room:b"))
    assert conn.end_replay("room:a", 1) == 1
    assert transport.frames == [b"room:a#2"]
    assert conn.is_replaying("room:b")
    conn.deliver(live(4, "room:b"))
    assert conn.end_replay("room:b", 3) == 1
    assert transport.frames == [b"room:a#2", b"room:b#4"]


def test_abort_replay_drops_held_events() -> None:
    conn, transport = make_connection("alice")
    conn.begin_replay(CHANNEL)
    conn.deliver(live(1))
    conn.abort_replay(CHANNEL)
    assert not conn.is_replaying(CHANNEL)
    assert conn.end_replay(CHANNEL, 0) == 0
    assert transport.frames == []
    conn.abort_replay(CHANNEL)  # harmless when nothing is held


def test_end_replay_without_begin_releases_nothing() -> None:
    conn, transport = make_connection("alice")
    assert conn.end_replay(CHANNEL, 0) == 0
    assert transport.frames == []


def test_release_stops_when_the_consumer_turns_slow() -> None:
    conn, transport = make_connection("alice", max_buffer=10)
    conn.begin_replay(CHANNEL)
    conn.deliver(live(1))
    conn.deliver(live(2))
    transport.buffered_bytes = 11
    assert conn.end_replay(CHANNEL, 0) == 0
    assert transport.frames == []
    assert transport.closed is not None and transport.closed[0] == CloseCode.SLOW_CONSUMER


def test_live_events_the_replay_already_sent_are_not_sent_twice() -> None:
    # The replay's read may see an event before its own live fan-out arrives.
    conn, transport = make_connection("alice")
    conn.begin_replay(CHANNEL)
    conn.end_replay(CHANNEL, 5)
    conn.deliver(live(4))
    conn.deliver(live(5))
    conn.deliver(live(None))  # ephemeral frames are never filtered
    conn.deliver(live(6))
    conn.deliver(live(7))
    assert transport.frames == [b"room:r1#None", b"room:r1#6", b"room:r1#7"]


def test_the_replay_floor_is_per_channel() -> None:
    conn, transport = make_connection("alice")
    conn.begin_replay("room:a")
    conn.end_replay("room:a", 5)
    conn.deliver(live(3, "room:b"))
    conn.deliver(live(5, "room:a"))
    assert transport.frames == [b"room:b#3"]
