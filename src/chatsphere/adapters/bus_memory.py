"""In-process broker: one node, deliveries handed straight to the hub."""

from __future__ import annotations

from ..ports.bus import Delivery, DeliveryHandler


class MemoryBroker:
    """Synchronous fan-out within one process.

    ``publish`` calls the hub immediately, so deliveries leave in publication order
    and an event reaches local sockets before the sender's ack is written.
    """

    def __init__(self) -> None:
        self._handler: DeliveryHandler = lambda delivery: None
        self._channels: set[str] = set()
        self.published = 0

    def set_handler(self, handler: DeliveryHandler) -> None:
        self._handler = handler

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._channels.clear()

    async def ping(self) -> bool:
        return True

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    def publish(self, delivery: Delivery) -> None:
        self.published += 1
        if delivery.channel in self._channels:
            self._handler(delivery)
