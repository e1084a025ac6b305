"""gateway/hub.py: local fan-out from the broker, and broker subscriptions that follow it."""

from __future__ import annotations

import asyncio

import pytest

from chatsphere.adapters.bus_memory import MemoryBroker
from chatsphere.gateway.hub import Hub
from chatsphere.ports.bus import Delivery
from tests.unit.fakes import FakeTransport, make_connection

ROOM = "room:r1"


class RecordingBroker(MemoryBroker):
    """The real in-process broker, also recording subscription changes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    async def subscribe(self, channel: str) -> None:
        self.calls.append(("subscribe", channel))
        await super().subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        self.calls.append(("unsubscribe", channel))
        await super().unsubscribe(channel)


@pytest.fixture
def broker() -> RecordingBroker:
    return RecordingBroker()


@pytest.fixture
def hub(broker: RecordingBroker) -> Hub:
    return Hub(broker)


async def joined(hub: Hub, user_id: str, conn_id: str, *channels: str) -> FakeTransport:
    conn, transport = make_connection(user_id, conn_id)
    hub.register(conn)
    for channel in channels:
        await hub.subscribe(conn, channel)
    return transport


async def test_fan_out_reaches_every_subscriber_with_the_same_bytes(
    hub: Hub, broker: RecordingBroker
) -> None:
    transports = [await joined(hub, f"u{i}", f"c{i}", ROOM) for i in range(5)]
    outsider = await joined(hub, "x", "cx", "room:other")
    frame = b'{"type":"new_message","roomId":"r1","seq":2,"data":{}}'
    broker.publish(Delivery(ROOM, frame, 2))
    for transport in transports:
        assert transport.frames == [frame]
        assert transport.frames[0] is frame  # encoded once, never copied
    assert outsider.frames == []
    assert hub.deliveries == 5


async def test_exclude_user_skips_every_connection_of_that_user(
    hub: Hub, broker: RecordingBroker
) -> None:
    alice_phone = await joined(hub, "alice", "a1", ROOM)
    alice_laptop = await joined(hub, "alice", "a2", ROOM)
    bob = await joined(hub, "bob", "b1", ROOM)
    broker.publish(Delivery(ROOM, b"typing", exclude_user="alice"))
    assert alice_phone.frames == [] and alice_laptop.frames == []
    assert bob.frames == [b"typing"]


async def test_drop_user_delivers_then_unsubscribes_that_user(
    hub: Hub, broker: RecordingBroker
) -> None:
    alice_1 = await joined(hub, "alice", "a1", ROOM)
    alice_2 = await joined(hub, "alice", "a2", ROOM)
    bob = await joined(hub, "bob", "b1", ROOM)
    broker.publish(Delivery(ROOM, b"alice left", 3, drop_user="alice"))
    assert alice_1.frames == [b"alice left"] and alice_2.frames == [b"alice left"]
    assert bob.frames == [b"alice left"]
    assert hub.channel_size(ROOM) == 1
    for conn in hub.user_connections("alice"):
        assert ROOM not in conn.channels
    broker.publish(Delivery(ROOM, b"after", 4))
    assert alice_1.frames == [b"alice left"] and alice_2.frames == [b"alice left"]
    assert bob.frames == [b"alice left", b"after"]


async def test_dropping_the_last_user_releases_the_broker_channel(
    hub: Hub, broker: RecordingBroker
) -> None:
    await joined(hub, "alice", "a1", ROOM)
    broker.publish(Delivery(ROOM, b"alice left", 2, drop_user="alice"))
    assert hub.channel_size(ROOM) == 0
    for _ in range(3):
        await asyncio.sleep(0)  # the broker unsubscribe runs as a task
    assert broker.calls[-1] == ("unsubscribe", ROOM)
    broker.publish(Delivery(ROOM, b"nobody", 3))
    assert hub.deliveries == 1


async def test_broker_subscription_follows_first_and_last_local_subscriber(
    hub: Hub, broker: RecordingBroker
) -> None:
    alice, _ = make_connection("alice", "a1")
    bob, _ = make_connection("bob", "b1")
    hub.register(alice)
    hub.register(bob)
    await hub.subscribe(alice, ROOM)
    await hub.subscribe(bob, ROOM)
    await hub.subscribe(bob, ROOM)  # again: nothing new
    assert broker.calls == [("subscribe", ROOM)]
    await hub.unsubscribe(alice, ROOM)
    assert broker.calls == [("subscribe", ROOM)]
    await hub.unsubscribe(bob, ROOM)
    assert broker.calls == [("subscribe", ROOM), ("unsubscribe", ROOM)]
    await hub.unsubscribe(bob, ROOM)  # not subscribed: nothing
    assert len(broker.calls) == 2


async def test_unregister_leaves_every_channel(hub: Hub, broker: RecordingBroker) -> None:
    conn, transport = make_connection("alice", "a1")
    hub.register(conn)
    await hub.subscribe(conn, ROOM)
    await hub.subscribe(conn, "user:alice")
    assert len(hub) == 1
    await hub.unregister(conn)
    assert len(hub) == 0
    assert hub.user_connections("alice") == set()
    assert conn.channels == set()
    assert sorted(c for c in broker.calls if c[0] == "unsubscribe") == [
        ("unsubscribe", ROOM),
        ("unsubscribe", "user:alice"),
    ]
    broker.publish(Delivery(ROOM, b"x", 1))
    assert transport.frames == []


async def test_user_connections_tracks_each_users_connections(hub: Hub) -> None:
    a1, _ = make_connection("alice", "a1")
    a2, _ = make_connection("alice", "a2")
    hub.register(a1)
    hub.register(a2)
    assert hub.user_connections("alice") == {a1, a2}
    await hub.unregister(a1)
    assert hub.user_connections("alice") == {a2}
    assert hub.user_connections("nobody") == set()


async def test_a_slow_subscriber_is_dropped_without_holding_the_others(
    hub: Hub, broker: RecordingBroker
) -> None:
    slow, slow_transport = make_connection("slow", "s1", max_buffer=10)
    hub.register(slow)
    await hub.subscribe(slow, ROOM)
    fast = await joined(hub, "fast", "f1", ROOM)
    slow_transport.buffered_bytes = 11
    broker.publish(Delivery(ROOM, b"event", 1))
    assert fast.frames == [b"event"]
    assert slow_transport.frames == []
    assert slow_transport.closed is not None and slow_transport.closed[0] == 4000


async def test_deliveries_to_a_replaying_connection_are_held(
    hub: Hub, broker: RecordingBroker
) -> None:
    conn, transport = make_connection("alice", "a1")
    hub.register(conn)
    conn.begin_replay(ROOM)
    await hub.subscribe(conn, ROOM)
    broker.publish(Delivery(ROOM, b"seq5", 5))
    assert transport.frames == []
    conn.end_replay(ROOM, 4)
    assert transport.frames == [b"seq5"]
