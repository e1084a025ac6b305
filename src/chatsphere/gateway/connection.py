"""One client connection's transport-facing state: writes, subscriptions, resume seam."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from ..auth import Principal
from ..ports.bus import Delivery
from ..protocol.closecodes import CloseCode

log = logging.getLogger(__name__)


#: What :meth:`Transport.offer` did with a frame.
QUEUED = 0
CLOSED = 1  # nothing more is written on this connection
FULL = 2  # the limit's worth of bytes already waits: a slow consumer


class Transport(Protocol):
    """What a connection needs from the WebSocket library."""

    def offer(self, data: bytes, limit: int) -> int:
        """Queue one text frame without waiting, unless the transport is closed
        (:data:`CLOSED`) or more than ``limit`` bytes already wait (:data:`FULL`).

        One call per frame, because fan-out makes it once per recipient.
        """
        ...

    def buffered(self) -> int:
        """Bytes written but not yet accepted by the kernel."""
        ...

    def is_open(self) -> bool: ...

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake (never blocks)."""
        ...


#: Seconds a replay waits for the client to read before closing it as slow (4000).
REPLAY_DRAIN_TIMEOUT = 30.0
#: Live events held for one channel while its replay runs; beyond this the client is
#: too far behind, and closing it (4000, then resume) bounds the memory it can hold.
MAX_HELD_DURING_REPLAY = 10_000


class Connection:
    """A client session on this node.

    Writes never block: frames go to the transport's buffer, which is bounded by
    ``max_buffer`` bytes; a consumer that lets it fill is closed with 4000 (slow
    consumer) so it cannot hold the room back, and it resumes after reconnecting.
    """

    __slots__ = (
        "_floors",
        "_replaying",
        "_settled",
        "channels",
        "connection_id",
        "max_buffer",
        "pending_sends",
        "principal",
        "transport",
    )

    def __init__(
        self,
        connection_id: str,
        principal: Principal,
        transport: Transport,
        max_buffer: int,
    ) -> None:
        self.connection_id = connection_id
        self.principal = principal
        self.transport = transport
        self.max_buffer = max_buffer
        self.channels: set[str] = set()
        self._replaying: dict[str, list[Delivery]] | None = None
        self._floors: dict[str, int] | None = None  # channel -> last seq its replay sent
        # Sends handed to the store without waiting and not yet answered (dispatch.py).
        self.pending_sends = 0
        self._settled: asyncio.Future[None] | None = None

    @property
    def user_id(self) -> str:
        return self.principal.user_id

    def write(self, frame: bytes) -> bool:
        """Queue ``frame``; False if the connection is closed or was just dropped as slow."""
        offered = self.transport.offer(frame, self.max_buffer)
        if offered == QUEUED:
            return True
        if offered == FULL:
            self.close(CloseCode.SLOW_CONSUMER, "slow consumer: send queue full")
        return False

    def close(self, code: int, reason: str) -> None:
        # The handler's exit unregisters the connection; never mutate the hub from here,
        # since this can run while the hub is iterating a channel.
        if self.transport.is_open():
            self.transport.close(code, reason)

    async def drained(self, timeout: float = REPLAY_DRAIN_TIMEOUT) -> bool:
        """Wait until the send buffer is a quarter full at most; False if the client is gone.

        Used to pace long replays so a client that reads promptly is never closed as a
        slow consumer for the size of its own gap; one that stops reading for
        ``timeout`` seconds is.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.transport.is_open() and self.transport.buffered() > self.max_buffer // 4:
            if loop.time() > deadline:
                self.close(CloseCode.SLOW_CONSUMER, "slow consumer: replay not read")
                return False
            await asyncio.sleep(0.005)
        return self.transport.is_open()

    def send_started(self) -> None:
        """A send of this connection was handed to the store; its answer is to come."""
        self.pending_sends += 1

    def send_finished(self) -> None:
        """A send's answer was written (or the send failed)."""
        self.pending_sends -= 1
        if self.pending_sends == 0 and self._settled is not None:
            settled, self._settled = self._settled, None
            if not settled.done():
                settled.set_result(None)

    async def sends_settled(self) -> None:
        """Wait until every send handed to the store has been answered."""
        while self.pending_sends:
            if self._settled is None:
                self._settled = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._settled)

    def deliver(self, delivery: Delivery) -> None:
        """A live delivery from the hub; held back while its channel is replaying."""
        if self._replaying is not None and delivery.seq is not None:
            held = self._replaying.get(delivery.channel)
            if held is not None:
                if len(held) >= MAX_HELD_DURING_REPLAY:
                    self.close(CloseCode.SLOW_CONSUMER, "slow consumer: replay fell behind")
                    return
                held.append(delivery)
                return
        if self._floors is not None and delivery.seq is not None and self._replayed(delivery):
            return
        # write(), inline: this runs once per recipient of every event.
        if self.transport.offer(delivery.frame, self.max_buffer) == FULL:
            self.close(CloseCode.SLOW_CONSUMER, "slow consumer: send queue full")

    def _replayed(self, delivery: Delivery) -> bool:
        """Whether the channel's last replay already sent this event.

        The replay's read can see a committed event before that event's own fan-out
        reaches this connection (the commit listener runs after the writer thread hands
        back; with a bus, after a network hop), so it can arrive live after the replay
        ended. Fan-out keeps seq order per channel: the first newer event retires the floor.
        """
        floors = self._floors
        assert floors is not None and delivery.seq is not None
        floor = floors.get(delivery.channel)
        if floor is None:
            return False
        if delivery.seq <= floor:
            return True
        del floors[delivery.channel]
        if not floors:
            self._floors = None
        return False

    def begin_replay(self, channel: str) -> None:
        """Hold live events of ``channel`` until :meth:`end_replay` (subscribe after this)."""
        if self._replaying is None:
            self._replaying = {}
        self._replaying[channel] = []

    def end_replay(self, channel: str, replayed_up_to: int) -> int:
        """Release held events newer than the replay; returns how many were released."""
        held = self._replaying.pop(channel, []) if self._replaying else []
        if not self._replaying:
            self._replaying = None
        if self._floors is None:
            self._floors = {}
        self._floors[channel] = replayed_up_to
        released = 0
        for delivery in held:
            if (
                delivery.seq is not None
                and delivery.seq > replayed_up_to
                and self.write(delivery.frame)
            ):
                released += 1
        return released

    def abort_replay(self, channel: str) -> None:
        """Drop held events unreleased (the caller may not see this channel after all)."""
        if self._replaying is not None:
            self._replaying.pop(channel, None)
            if not self._replaying:
                self._replaying = None

    def is_replaying(self, channel: str) -> bool:
        return self._replaying is not None and channel in self._replaying
