"""The Broker contract, run against every implementation.

To add a backend (Redis), add one factory to ``BROKERS``; every test runs against it.
Implementations may deliver asynchronously, so tests wait for the expected deliveries
(bounded) and check absences only after a later sentinel publication has arrived.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from chatsphere.adapters.bus_memory import MemoryBroker
from chatsphere.ports.bus import Broker, Delivery, room_channel, user_channel

WAIT = 5.0


async def memory_broker() -> Broker:
    return MemoryBroker()


BROKERS: dict[str, Callable[[], Awaitable[Broker]]] = {
    "memory": memory_broker,
}


class Inbox:
    def __init__(self) -> None:
        self.received: list[Delivery] = []
        self._changed = asyncio.Event()

    def __call__(self, delivery: Delivery) -> None:
        self.received.append(delivery)
        self._changed.set()

    def on(self, channel: str) -> list[bytes]:
        return [d.frame for d in self.received if d.channel == channel]

    async def wait_for(self, channel: str, frame: bytes) -> None:
        async def arrived() -> None:
            while frame not in self.on(channel):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(arrived(), WAIT)


@pytest.fixture(params=sorted(BROKERS))
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    instance = await BROKERS[request.param]()
    await instance.start()
    yield instance
    await instance.close()


@pytest.fixture
def inbox(broker: Broker) -> Inbox:
    box = Inbox()
    broker.set_handler(box)
    return box


def test_memory_broker_satisfies_the_protocol() -> None:
    _: Broker = MemoryBroker()


def test_channel_names() -> None:
    assert room_channel("r1") == "room:r1"
    assert user_channel("u1") == "user:u1"
    assert room_channel("x") != user_channel("x")


async def test_ping(broker: Broker) -> None:
    assert await broker.ping() is True


async def test_publication_order_is_kept_per_channel(broker: Broker, inbox: Inbox) -> None:
    await broker.subscribe("room:a")
    await broker.subscribe("room:b")
    for i in range(100):
        broker.publish(Delivery("room:a", f"a{i}".encode(), i + 1))
        broker.publish(Delivery("room:b", f"b{i}".encode(), i + 1))
    await inbox.wait_for("room:a", b"a99")
    await inbox.wait_for("room:b", b"b99")
    assert inbox.on("room:a") == [f"a{i}".encode() for i in range(100)]
    assert inbox.on("room:b") == [f"b{i}".encode() for i in range(100)]


async def test_delivery_fields_survive(broker: Broker, inbox: Inbox) -> None:
    await broker.subscribe("room:a")
    sent = Delivery("room:a", b'{"x":"\xc3\xa9"}', 7, exclude_user="alice", drop_user="bob")
    broker.publish(sent)
    await inbox.wait_for("room:a", sent.frame)
    assert inbox.received == [sent]


async def test_only_subscribed_channels_are_delivered(broker: Broker, inbox: Inbox) -> None:
    await broker.subscribe("room:mine")
    broker.publish(Delivery("room:other", b"not for us"))
    broker.publish(Delivery("user:someone", b"not for us either"))
    broker.publish(Delivery("room:mine", b"sentinel"))
    await inbox.wait_for("room:mine", b"sentinel")
    assert [d.channel for d in inbox.received] == ["room:mine"]


async def test_unsubscribe_stops_delivery(broker: Broker, inbox: Inbox) -> None:
    await broker.subscribe("room:a")
    await broker.subscribe("room:keep")
    broker.publish(Delivery("room:a", b"before"))
    await inbox.wait_for("room:a", b"before")
    await broker.unsubscribe("room:a")
    broker.publish(Delivery("room:a", b"after"))
    broker.publish(Delivery("room:keep", b"sentinel"))
    await inbox.wait_for("room:keep", b"sentinel")
    assert inbox.on("room:a") == [b"before"]


async def test_subscribe_again_after_unsubscribe(broker: Broker, inbox: Inbox) -> None:
    await broker.subscribe("room:a")
    await broker.unsubscribe("room:a")
    await broker.subscribe("room:a")
    broker.publish(Delivery("room:a", b"back"))
    await inbox.wait_for("room:a", b"back")
    assert inbox.on("room:a") == [b"back"]


async def test_subscribing_twice_delivers_once(broker: Broker, inbox: Inbox) -> None:
    await broker.subscribe("room:a")
    await broker.subscribe("room:a")
    broker.publish(Delivery("room:a", b"once"))
    broker.publish(Delivery("room:a", b"sentinel"))
    await inbox.wait_for("room:a", b"sentinel")
    assert inbox.on("room:a") == [b"once", b"sentinel"]


async def test_unsubscribing_an_unknown_channel_is_harmless(broker: Broker, inbox: Inbox) -> None:
    await broker.unsubscribe("room:never")
    await broker.subscribe("room:a")
    broker.publish(Delivery("room:a", b"ok"))
    await inbox.wait_for("room:a", b"ok")
