"""Who may see and act in a room, with a short-lived cache of rooms and memberships.

Sends are the hot path: checking membership in the database for each would cost a
round trip per message. Entries are dropped at once when this node commits a
membership or room change for them, so a kicked user is refused immediately; ``ttl``
(60 s) only bounds how long a change committed by *another* node can go unseen. It is
long because fans send rarely: with 500 senders at one message each per five seconds
(bench S3), a 5 s TTL missed on almost every send and cost two reads per message.

Each entry lives a random part of the TTL, between ``1 - jitter`` of it and all of it.
Entries filled together (a crowd joining a live stream, a node's first minute) would
otherwise expire together and refill together, every TTL: in bench S3 that was a
thousand reads inside a second, once a minute, and the sends queued behind them.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..clock import Clock
from ..domain.events import EventType, RoomEvent
from ..domain.rooms import Member, Room, can_see, require_joined
from ..errors import room_not_found
from ..ports.store import Store

K = TypeVar("K")
V = TypeVar("V")

_MEMBERSHIP_EVENTS = {
    EventType.USER_JOINED,
    EventType.USER_LEFT,
    EventType.USER_INVITED,
    EventType.ROLE_CHANGED,
}


class _Load:
    """One store read in flight for a cache key."""

    __slots__ = ("stale",)

    def __init__(self) -> None:
        self.stale = False


def _mark_stale(loading: dict[K, list[_Load]], key: K) -> None:
    for mark in loading.get(key, ()):
        mark.stale = True


class Access:
    #: Each cache is cleared when it grows past this (client input picks the keys).
    max_entries = 200_000

    def __init__(self, store: Store, clock: Clock, ttl: float = 60.0, jitter: float = 0.25) -> None:
        if not 0.0 <= jitter < 1.0:
            raise ValueError("jitter is the part of the TTL an entry may lose: 0 <= jitter < 1")
        self._store = store
        self._clock = clock
        self._ttl = ttl
        self._jitter = jitter
        self._rooms: dict[str, tuple[float, Room | None]] = {}
        self._members: dict[tuple[str, str], tuple[float, Member | None]] = {}
        self._user_rooms: dict[str, tuple[float, list[str]]] = {}
        # Reads in flight, per cache and key. Invalidating a key marks its reads stale:
        # one may have seen the state before the change, so its result is used but not
        # cached. Only that key's: a join elsewhere must not make every read then in
        # flight (say, the room lists of users connecting meanwhile) miss again.
        self._loading_rooms: dict[str, list[_Load]] = {}
        self._loading_members: dict[tuple[str, str], list[_Load]] = {}
        self._loading_user_rooms: dict[str, list[_Load]] = {}

    async def _cached(
        self,
        cache: dict[K, tuple[float, V]],
        loading: dict[K, list[_Load]],
        key: K,
        load: Callable[[], Awaitable[V]],
    ) -> V:
        now = self._clock.monotonic()
        hit = cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        mark = _Load()
        loading.setdefault(key, []).append(mark)
        try:
            value = await load()
        finally:
            marks = loading[key]
            marks.remove(mark)
            if not marks:
                del loading[key]
        if not mark.stale:
            if len(cache) > self.max_entries:
                cache.clear()
            lifetime = self._ttl * (1.0 - self._jitter * random.random())  # noqa: S311 (spread, not secrecy)
            cache[key] = (now + lifetime, value)
        return value

    async def room(self, room_id: str) -> Room | None:
        return await self._cached(
            self._rooms, self._loading_rooms, room_id, lambda: self._store.get_room(room_id)
        )

    async def member(self, room_id: str, user_id: str) -> Member | None:
        return await self._cached(
            self._members,
            self._loading_members,
            (room_id, user_id),
            lambda: self._store.get_member(room_id, user_id),
        )

    async def user_rooms(self, user_id: str) -> list[str]:
        """Ids of the rooms the user has joined (presence goes to these).

        Cached like the rest, an empty list too: a user's connect and disconnect (and
        reconnects within ``ttl``) cost one store read between them.
        """
        return await self._cached(
            self._user_rooms,
            self._loading_user_rooms,
            user_id,
            lambda: self._store.user_room_ids(user_id),
        )

    async def visible(self, user_id: str, room_id: str) -> tuple[Room, Member | None]:
        """The room and the caller's membership; ``room_not_found`` if they may not see it."""
        room = await self.room(room_id)
        if room is None:
            raise room_not_found(room_id)
        member = await self.member(room_id, user_id)
        if not can_see(room, member):
            raise room_not_found(room_id)
        return room, member

    async def joined(self, user_id: str, room_id: str) -> tuple[Room, Member]:
        """The room and the caller's joined membership, or the matching refusal."""
        found = self.joined_cached(user_id, room_id)
        if found is not None:
            return found
        room, member = await self.visible(user_id, room_id)
        return room, require_joined(member, room_id)

    def joined_cached(self, user_id: str, room_id: str) -> tuple[Room, Member] | None:
        """:meth:`joined` from the cache alone: None unless both entries are fresh.

        Every send asks this, and usually both are: answered without a coroutine.
        """
        now = self._clock.monotonic()
        room_hit = self._rooms.get(room_id)
        member_hit = self._members.get((room_id, user_id))
        if (
            room_hit is None
            or member_hit is None
            or room_hit[0] <= now
            or member_hit[0] <= now
            or room_hit[1] is None
        ):
            return None
        room, member = room_hit[1], member_hit[1]
        if not can_see(room, member):
            raise room_not_found(room_id)
        return room, require_joined(member, room_id)

    def forget_room(self, room_id: str) -> None:
        self._rooms.pop(room_id, None)
        _mark_stale(self._loading_rooms, room_id)

    def forget_member(self, room_id: str, user_id: str) -> None:
        self._members.pop((room_id, user_id), None)
        self._user_rooms.pop(user_id, None)
        _mark_stale(self._loading_members, (room_id, user_id))
        _mark_stale(self._loading_user_rooms, user_id)

    def observe(self, event: RoomEvent) -> None:
        """Drop cache entries an event made stale (called for every event seen)."""
        if event.type in _MEMBERSHIP_EVENTS:
            user = event.data.get("userId")
            if isinstance(user, str):
                self.forget_member(event.room_id, user)
            self.forget_room(event.room_id)
        elif event.type is EventType.ROOM_UPDATED:
            self.forget_room(event.room_id)
