"""The Broker port: fan-out of encoded frames between nodes.

A node subscribes to a channel (``room:ID`` or ``user:ID``) while at least one of its
local connections needs it. :meth:`Broker.publish` is non-blocking and keeps
publication order per channel. Delivery is at most once: a node that misses a
publication recovers it from the store by ``seq`` (resume), never from the bus.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..domain.values import hot_value


@hot_value
class Delivery:
    """One encoded frame for every subscriber of ``channel`` on every node.

    ``seq`` is set for room events. ``exclude_user`` suppresses delivery to that
    user's connections (no typing echo). ``drop_user`` unsubscribes that user's
    connections from the channel after the frame is delivered (leave, kick).
    """

    channel: str
    frame: bytes
    seq: int | None = None
    exclude_user: str | None = None
    drop_user: str | None = None


DeliveryHandler = Callable[[Delivery], None]


def room_channel(room_id: str) -> str:
    return f"room:{room_id}"


def user_channel(user_id: str) -> str:
    return f"user:{user_id}"


class Broker(Protocol):
    def set_handler(self, handler: DeliveryHandler) -> None:
        """The node's hub: called for each delivery on a subscribed channel."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> bool: ...

    async def subscribe(self, channel: str) -> None: ...

    async def unsubscribe(self, channel: str) -> None: ...

    def publish(self, delivery: Delivery) -> None:
        """Queue ``delivery`` for all nodes; order is kept per channel."""
        ...
