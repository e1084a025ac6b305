"""A client session from open to close, the same whichever WebSocket shell carries it."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterable, Callable

from ..ports.bus import user_channel
from ..protocol.closecodes import CloseCode
from ..protocol.codec import server_frame
from ..services.presence import PresenceService
from .connection import Connection
from .dispatch import Dispatcher, Started
from .heartbeat import Heartbeat
from .hub import Hub

log = logging.getLogger(__name__)

#: Starts one client message without waiting: :meth:`Dispatcher.begin` for a connection.
FrameStarter = Callable[[str | bytes], Started | None]


class Sessions:
    """Registers a connection, greets it, feeds its frames to the dispatcher, cleans up.

    Every running session is tracked so that shutdown can close them all with 1001 and
    wait for their in-flight frames (and so their commits) to finish.
    """

    def __init__(
        self,
        hub: Hub,
        dispatcher: Dispatcher,
        presence: PresenceService,
        heartbeat_interval: float,
    ) -> None:
        self._hub = hub
        self._dispatcher = dispatcher
        self._presence = presence
        self._heartbeat_interval = heartbeat_interval
        self._running: set[asyncio.Task[object]] = set()

    async def run(
        self,
        conn: Connection,
        incoming: AsyncIterable[str | bytes | Started],
        heartbeat: Heartbeat | None = None,
    ) -> None:
        """Serve ``conn`` until ``incoming`` ends (the peer closed) or raises.

        ``incoming`` yields the client's messages; one with a ``handle_directly`` method
        (the picows listener's) is given :meth:`Dispatcher.begin` to call on each new
        message while this task waits: it then yields what ``begin`` gave back, and the
        messages that arrived while this task was busy, in their order.
        """
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        self._hub.register(conn)
        direct: Callable[[FrameStarter | None], None] | None = None
        try:
            await self._hub.subscribe(conn, user_channel(conn.user_id))
            conn.write(
                server_frame(
                    "connected",
                    {
                        "userId": conn.user_id,
                        "sessionId": conn.connection_id,
                        "heartbeatInterval": self._heartbeat_interval,
                    },
                )
            )
            try:
                await self._presence.connected(conn.user_id, conn.connection_id)
            except Exception:
                # Presence is best-effort: a store that is slow to answer during a connect
                # storm must not cost the client its connection (it was closed with 1011).
                log.exception("presence update on connect failed")
            if heartbeat is not None:
                heartbeat.add(conn)
            begin, handle_frame = self._dispatcher.begin, self._dispatcher.handle_frame
            direct = getattr(incoming, "handle_directly", None)
            if direct is not None:
                # While this task waits for frames, the listener starts each new one at
                # once in its own callback: a send then costs no wake-up of this task.
                direct(functools.partial(begin, conn))
            async for item in incoming:
                if isinstance(item, str | bytes):
                    started = begin(conn, item)
                    if started is None:
                        continue
                else:  # begun already, by the listener's call of begin
                    started = item
                if conn.pending_sends:
                    await conn.sends_settled()
                await handle_frame(conn, started)
            if conn.pending_sends:  # as for a frame in flight: its commit ends first
                await conn.sends_settled()
        finally:
            if direct is not None:
                direct(None)
            if heartbeat is not None:
                heartbeat.remove(conn)
            await self._hub.unregister(conn)
            try:
                await self._presence.disconnected(conn.user_id, conn.connection_id)
            except Exception:  # the store may already be closing during shutdown
                log.exception("presence update on disconnect failed")
            if task is not None:
                self._running.discard(task)

    def __len__(self) -> int:
        return len(self._running)

    async def close_all(self, grace: float) -> None:
        """Close every connection with 1001 and wait up to ``grace`` s for sessions to end."""
        for conn in list(self._hub.connections):
            conn.close(CloseCode.GOING_AWAY, "server shutting down; reconnect and resume")
        if self._running:
            await asyncio.wait(set(self._running), timeout=grace)
