"""Room counters as this node last committed them, so a batch of posts need not read them.

Every group commit used to start by reading the ``last_seq`` of each room it touched
(and on PostgreSQL locking it) before numbering its messages: on PostgreSQL a round
trip of its own, close to half of a small batch's wall time and of the writer's CPU,
and on SQLite a query per batch. A node that wrote a room last knows its counter
already. The applier numbers a batch of posts from these values and writes each
counter back *guarded*: the statement fails (a NOT NULL violation, see
:meth:`~chatsphere.adapters.sql.bulk.BulkStatements.advance_counters`) if the stored
counter is no longer the one this node knew, because another node (or a transaction
of this node that did not commit) moved it. The transaction then rolls back and the
batch runs again the long way, reading the counters; nothing is numbered from a stale
value.

Rooms another node writes to would fail that way again and again, so a room whose
guard failed is kept off the short path for :attr:`RoomCounters.holdoff` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence


class RoomCounters:
    """``last_seq`` per room: known values, and the ones a batch in flight will commit.

    Used by one batch at a time (the group-commit task's, in the writer thread or, on
    PostgreSQL, on the event loop: see pipelined.py). Values are staged while a batch
    is applied and become known only once its transaction committed (:meth:`committed`);
    a failed transaction :meth:`discard`\\ s them.
    """

    def __init__(
        self,
        capacity: int = 50_000,
        holdoff: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        #: Rooms remembered at most; past that the memory starts over (a miss costs
        #: one batch the long way, not a wrong number).
        self.capacity = capacity
        #: Seconds a room whose guard failed is numbered the long way.
        self.holdoff = holdoff
        self._clock = clock
        self._known: dict[str, int] = {}
        self._staged: dict[str, int] = {}
        self._held_off: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._known)

    def known(self, rooms: Sequence[str]) -> dict[str, int] | None:
        """Each room's last committed seq, or None unless every one of them is known
        (and none is held off)."""
        known = self._known
        try:
            counters = {room: known[room] for room in rooms}
        except KeyError:
            return None
        if self._held_off and not self._clear_of_holdoff(rooms):
            return None
        return counters

    def _clear_of_holdoff(self, rooms: Iterable[str]) -> bool:
        now = self._clock()
        for room in rooms:
            until = self._held_off.get(room)
            if until is not None:
                if until > now:
                    return False
                del self._held_off[room]
        return True

    def stage(self, counters: Mapping[str, int]) -> None:
        """The counters the batch being applied leaves (known once it commits)."""
        self._staged = dict(counters)

    def committed(self) -> None:
        """The staged batch committed: its counters are now the stored ones."""
        staged, self._staged = self._staged, {}
        if len(self._known) + len(staged) > self.capacity:
            self._known.clear()
        self._known.update(staged)

    def discard(self) -> None:
        """The staged batch did not commit: keep what was known before it."""
        self._staged = {}

    def refused(self, rooms: Iterable[str]) -> None:
        """A guard failed for one of ``rooms``: forget them and hold them off for a while."""
        self._staged = {}
        until = self._clock() + self.holdoff
        if len(self._held_off) > self.capacity:
            self._held_off.clear()
        for room in rooms:
            self._known.pop(room, None)
            self._held_off[room] = until
