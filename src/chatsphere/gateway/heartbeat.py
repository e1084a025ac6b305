"""Server pings, spread over time so connections opened together are not pinged together.

A timing wheel with one-second slots: each connection's first ping falls at a random
point within the first interval, then every ``interval`` ± 10 %. One task per node
walks the slots; a connection whose pong does not come within ``timeout`` is closed
with 4001 (it may reconnect and resume) and its presence is cleared by the handler.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from ..protocol.closecodes import CloseCode
from .connection import Connection

log = logging.getLogger(__name__)

Pinger = Callable[[Connection], Awaitable[Awaitable[float]]]


class Heartbeat:
    def __init__(self, interval: float, timeout: float, ping: Pinger) -> None:
        self.interval = interval
        self.timeout = timeout
        self._ping = ping
        self._slots: dict[int, set[Connection]] = {}
        self._slot_of: dict[Connection, int] = {}
        self._next_slot = 0  # slots below this were already walked
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._rng = random.Random()  # noqa: S311 - jitter, not security
        self.timeouts = 0

    def _place(self, conn: Connection, delay: float) -> None:
        # Never a slot the walker has passed (possible when delay < 1 s): it would not ping again.
        slot = max(int(asyncio.get_running_loop().time() + delay), self._next_slot)
        self._slots.setdefault(slot, set()).add(conn)
        self._slot_of[conn] = slot

    def add(self, conn: Connection) -> None:
        self._place(conn, self._rng.uniform(0.1, 1.0) * self.interval)

    def remove(self, conn: Connection) -> None:
        slot = self._slot_of.pop(conn, None)
        if slot is not None:
            members = self._slots.get(slot)
            if members is not None:
                members.discard(conn)
                if not members:
                    del self._slots[slot]

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="heartbeat")

    async def close(self) -> None:
        for task in [self._task, *self._inflight]:
            if task is not None:
                task.cancel()
        self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        current = int(loop.time())
        while True:
            # ``current`` is the first slot not yet walked: wake at its start.
            await asyncio.sleep(max(0.0, current - loop.time()))
            now = int(loop.time())
            while current <= now:
                for conn in self._slots.pop(current, ()):
                    self._slot_of.pop(conn, None)
                    task = loop.create_task(self._check(conn))
                    self._inflight.add(task)
                    task.add_done_callback(self._inflight.discard)
                current += 1
                self._next_slot = current

    async def _check(self, conn: Connection) -> None:
        if not conn.transport.is_open():
            return
        try:
            waiter = await self._ping(conn)
            await asyncio.wait_for(waiter, self.timeout)
        except TimeoutError:
            self.timeouts += 1
            conn.close(CloseCode.HEARTBEAT_TIMEOUT, "no pong")
            return
        except Exception:  # the connection closed under us; its handler cleans up
            return
        if conn.transport.is_open():
            self._place(conn, self.interval * self._rng.uniform(0.9, 1.1))
