"""The node's connection hub: local subscriptions per channel, fan-out from the bus."""

from __future__ import annotations

import asyncio
import logging

from ..ports.bus import Broker, Delivery
from .connection import Connection

log = logging.getLogger(__name__)


class Hub:
    """Knows every connection on this node and which channels each listens to.

    The broker is subscribed to a channel while at least one local connection
    needs it. :meth:`deliver` is the broker's handler and the hot path: the frame
    bytes are written as they are to each local subscriber, with no re-encoding and
    no per-recipient coroutine.
    """

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._channels: dict[str, set[Connection]] = {}
        self._by_user: dict[str, set[Connection]] = {}
        self.connections: set[Connection] = set()
        self.deliveries = 0
        self._background: set[asyncio.Task[None]] = set()
        broker.set_handler(self.deliver)

    def __len__(self) -> int:
        return len(self.connections)

    def register(self, conn: Connection) -> None:
        self.connections.add(conn)
        self._by_user.setdefault(conn.user_id, set()).add(conn)

    async def unregister(self, conn: Connection) -> None:
        self.connections.discard(conn)
        users = self._by_user.get(conn.user_id)
        if users is not None:
            users.discard(conn)
            if not users:
                del self._by_user[conn.user_id]
        for channel in list(conn.channels):
            await self.unsubscribe(conn, channel)

    def user_connections(self, user_id: str) -> set[Connection]:
        return self._by_user.get(user_id, set())

    async def subscribe(self, conn: Connection, channel: str) -> None:
        members = self._channels.get(channel)
        if members is None:
            members = self._channels[channel] = set()
            await self._broker.subscribe(channel)
        members.add(conn)
        conn.channels.add(channel)

    async def unsubscribe(self, conn: Connection, channel: str) -> None:
        conn.channels.discard(channel)
        members = self._channels.get(channel)
        if members is None:
            return
        members.discard(conn)
        if not members:
            del self._channels[channel]
            await self._broker.unsubscribe(channel)

    def deliver(self, delivery: Delivery) -> None:
        members = self._channels.get(delivery.channel)
        if not members:
            return
        exclude = delivery.exclude_user
        count = 0
        for conn in tuple(members) if delivery.drop_user else members:
            if exclude is not None and conn.user_id == exclude:
                continue
            conn.deliver(delivery)
            count += 1
        self.deliveries += count
        if delivery.drop_user is not None:
            for conn in [c for c in members if c.user_id == delivery.drop_user]:
                members.discard(conn)
                conn.channels.discard(delivery.channel)
            if not members:
                del self._channels[delivery.channel]
                # Unsubscribing the broker is async; the channel is simply idle until then.
                self._broker_unsubscribe_later(delivery.channel)

    def _broker_unsubscribe_later(self, channel: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - delivery outside a loop (tests)
            return
        task = loop.create_task(self._unsubscribe_if_idle(channel))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _unsubscribe_if_idle(self, channel: str) -> None:
        if channel not in self._channels:
            await self._broker.unsubscribe(channel)

    def channel_size(self, channel: str) -> int:
        return len(self._channels.get(channel, ()))
