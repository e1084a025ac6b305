"""Server pings, spread over time so connections opened together are not pinged together.

A timing wheel with 100 ms slots: each connection's first ping falls at a random
point within the first interval, then every ``interval`` ± 10 %. One task per node
walks the slots; a connection whose pong does not come within ``timeout`` is closed
with 4001 (it may reconnect and resume) and its presence is cleared by the handler.

No task, coroutine, future or timer is created per ping. The walker visits each
connection in a due slot and, synchronously,

* if a ping to it is outstanding: when :meth:`Pinger.answered` says its pong came,
  the ping is settled; when not and the ping is ``timeout`` old, the connection is
  closed with 4001 and counted in :attr:`Heartbeat.timeouts`; when not yet, it is
  placed again at the ping's deadline (one ping outstanding at a time, as before);
* otherwise, when its ping is due, sends one (:meth:`Pinger.send_ping`, a write to the
  socket) and places it again at the earlier of its next ping and the ping's deadline,
  so a silent peer is closed ``timeout`` (plus at most one slot) after the ping.

Deadlines are exact (a connection is never closed before ``timeout`` has passed); pings
go out when their slot is walked. Slots are short because a walk runs on the event loop:
with one-second slots, 10,000 connections at the default 25 s interval meant ~400 pings
in one go every second, and a probe room's delivery p99 rose from 2.6-3.2 to 6.4-8.7 ms
while they went out (100 ms slots: 3.4-4.1 ms; S1's heartbeat rounds in bench/RESULTS.md
measure it). A connection is visited twice per interval when ``timeout < interval`` (the
check, then the next ping); a visit is a few dict and set operations (~1.2 µs per ping
for the walk alone, against ~23 µs for the task and ``wait_for`` per ping it replaces).
With 10,000 idle connections on uvloop (then on the websockets library), the whole ping
(write, pong parsed, bookkeeping) went from ~116-145 µs to ~32-36 µs of CPU (5 s
interval, ~2,000 pings/s); at the default 25 s interval (~400 pings/s) 1.65 % of a core
instead of 3.8 %. How a ping is written and its pong noticed is the pinger's business;
see ws_server.py.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from ..protocol.closecodes import CloseCode
from .connection import Connection

log = logging.getLogger(__name__)

#: Beyond this many slots to catch up on (a long stall, a wheel created long before it
#: started), the walker visits the occupied slots instead of every slot number.
_SPARSE_WALK = 64

#: Seconds per slot of the wheel.
SLOT_SECONDS = 0.1


class Pinger(Protocol):
    """Sends heartbeat pings and tells whether they were answered, without waiting."""

    def send_ping(self, conn: Connection) -> None:
        """Write a ping to ``conn`` now; only called while ``conn.transport.is_open()``."""
        ...

    def answered(self, conn: Connection) -> bool:
        """Whether the pong to the last ping sent to ``conn`` has arrived."""
        ...


class _Beat:
    """One connection's place in the wheel."""

    __slots__ = ("conn", "deadline", "ping_at", "slot")

    def __init__(self, conn: Connection, ping_at: float) -> None:
        self.conn = conn
        self.ping_at = ping_at  # when its next ping is due
        self.deadline: float | None = None  # when its outstanding ping times out
        self.slot = 0


class Heartbeat:
    def __init__(
        self,
        interval: float,
        timeout: float,
        pinger: Pinger,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.timeout = timeout
        self._pinger = pinger
        # The event loop's clock (asyncio and uvloop both read CLOCK_MONOTONIC); tests
        # pass a fake one and drive :meth:`walk` themselves.
        self._clock = clock
        self._slots: dict[int, set[_Beat]] = {}
        self._beats: dict[Connection, _Beat] = {}
        self._next_slot = self._slot_of(clock())  # slots below this were already walked
        self._task: asyncio.Task[None] | None = None
        self._rng = random.Random()  # noqa: S311 - jitter, not security
        self.timeouts = 0

    @staticmethod
    def _slot_of(moment: float) -> int:
        return int(moment / SLOT_SECONDS)

    def _place(self, beat: _Beat, at: float) -> None:
        # Never a slot the walker has passed (possible when ``at`` is less than a slot
        # away): it would not be visited again.
        slot = self._slot_of(at)
        if slot < self._next_slot:
            slot = self._next_slot
        members = self._slots.get(slot)
        if members is None:
            self._slots[slot] = {beat}
        else:
            members.add(beat)
        beat.slot = slot

    def add(self, conn: Connection) -> None:
        """Start pinging ``conn``: first at a random point within the first interval."""
        if conn in self._beats:
            self.remove(conn)
        beat = _Beat(conn, self._clock() + self._rng.uniform(0.1, 1.0) * self.interval)
        self._beats[conn] = beat
        self._place(beat, beat.ping_at)

    def remove(self, conn: Connection) -> None:
        beat = self._beats.pop(conn, None)
        if beat is not None:
            members = self._slots.get(beat.slot)
            if members is not None:
                members.discard(beat)
                if not members:
                    del self._slots[beat.slot]

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="heartbeat")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._task = None

    async def _run(self) -> None:
        clock = self._clock
        while True:
            # ``_next_slot`` is the first slot not yet walked: wake at its start.
            # (+1 ms: uvloop's timers have millisecond resolution and may fire a little
            # before the clock reaches the slot, which would only wake us again.)
            await asyncio.sleep(max(0.0, self._next_slot * SLOT_SECONDS - clock()) + 0.001)
            try:
                self.walk(clock())
            except Exception:  # pragma: no cover - walk handles each connection's errors
                log.exception("heartbeat walk failed")

    def walk(self, now: float) -> None:
        """Visit every connection in the slots up to ``now``'s (the walker task's step)."""
        first, last = self._next_slot, self._slot_of(now)
        if last < first:
            return
        # Everything placed during this walk goes after it: a connection is visited
        # once per walk, however many slots the walk catches up on.
        self._next_slot = last + 1
        slots = self._slots
        due: Iterable[int] = range(first, last + 1)
        if last - first > _SPARSE_WALK:
            due = sorted(slot for slot in slots if slot <= last)
        horizon = (last + 1) * SLOT_SECONDS  # a ping due before this goes out in this walk
        for slot in due:
            members = slots.pop(slot, None)
            if not members:
                continue
            for beat in members:
                try:
                    self._visit(beat, now, horizon)
                except Exception:
                    log.exception("heartbeat failed for connection %s", beat.conn.connection_id)
                    self._forget(beat)

    def _visit(self, beat: _Beat, now: float, horizon: float) -> None:
        conn = beat.conn
        if self._beats.get(conn) is not beat:  # removed while this walk was under way
            return
        if not conn.transport.is_open():
            # Closed (by the peer, as a slow consumer, by a timeout): its handler calls
            # remove(); until then it is simply no longer in the wheel.
            self._forget(beat)
            return
        deadline = beat.deadline
        if deadline is not None:
            if self._pinger.answered(conn):
                beat.deadline = None
            elif now >= deadline:
                self._forget(beat)
                self.timeouts += 1
                conn.close(CloseCode.HEARTBEAT_TIMEOUT, "no pong")
                return
            else:
                self._place(beat, deadline)
                return
        if beat.ping_at >= horizon:  # answered early; the next ping is in a later slot
            self._place(beat, beat.ping_at)
            return
        self._pinger.send_ping(conn)
        beat.deadline = deadline = now + self.timeout
        beat.ping_at = ping_at = now + self.interval * self._rng.uniform(0.9, 1.1)
        self._place(beat, ping_at if ping_at < deadline else deadline)

    def _forget(self, beat: _Beat) -> None:
        """Drop ``beat``, already taken out of its slot, unless ``conn`` was re-added."""
        if self._beats.get(beat.conn) is beat:
            del self._beats[beat.conn]
        members = self._slots.get(beat.slot)
        if members is not None:  # an error after it was placed again
            members.discard(beat)
            if not members:
                del self._slots[beat.slot]
