"""In-process presence: connection sets per user."""

from __future__ import annotations

from ..clock import Clock
from ..domain.presence import Presence, PresenceStatus


class MemoryPresenceStore:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._connections: dict[str, set[str]] = {}
        self._state: dict[str, Presence] = {}

    def _current(self, user_id: str) -> Presence:
        return self._state.get(user_id, Presence(user_id, PresenceStatus.OFFLINE, None, None, 0))

    def _store(self, before: Presence, after: Presence) -> tuple[Presence, bool]:
        self._state[after.user_id] = after
        changed = (before.status, before.custom_status) != (after.status, after.custom_status)
        return after, changed

    async def connect(self, user_id: str, connection_id: str) -> tuple[Presence, bool]:
        before = self._current(user_id)
        conns = self._connections.setdefault(user_id, set())
        conns.add(connection_id)
        status = PresenceStatus.ONLINE if before.status is PresenceStatus.OFFLINE else before.status
        after = Presence(user_id, status, before.custom_status, self._clock.now(), len(conns))
        return self._store(before, after)

    async def disconnect(self, user_id: str, connection_id: str) -> tuple[Presence, bool]:
        before = self._current(user_id)
        conns = self._connections.get(user_id, set())
        conns.discard(connection_id)
        if conns:
            after = Presence(
                user_id, before.status, before.custom_status, before.last_seen, len(conns)
            )
        else:
            self._connections.pop(user_id, None)
            after = Presence(
                user_id, PresenceStatus.OFFLINE, before.custom_status, self._clock.now(), 0
            )
        return self._store(before, after)

    async def set_status(
        self, user_id: str, status: PresenceStatus, custom_status: str | None
    ) -> tuple[Presence, bool]:
        before = self._current(user_id)
        conns = len(self._connections.get(user_id, ()))
        if conns == 0:
            status = PresenceStatus.OFFLINE  # connection-driven: nothing connected, not online
        after = Presence(user_id, status, custom_status, self._clock.now(), conns)
        return self._store(before, after)

    async def get(self, user_ids: list[str]) -> list[Presence]:
        return [self._current(u) for u in user_ids]
