"""The PresenceStore port: who is connected, with what status."""

from __future__ import annotations

from typing import Protocol

from ..domain.presence import Presence, PresenceStatus


class PresenceStore(Protocol):
    """Connection-driven presence.

    A user is online while at least one connection is registered (on any node);
    explicit statuses (away, busy) stick while connected. When the last connection
    goes, the user becomes offline and ``last_seen`` is stamped. Implementations that
    span nodes must expire connections of a node that vanished (TTL duty).
    """

    async def connect(self, user_id: str, connection_id: str) -> tuple[Presence, bool]:
        """Register a connection; returns presence and whether it changed."""
        ...

    async def disconnect(self, user_id: str, connection_id: str) -> tuple[Presence, bool]: ...

    async def set_status(
        self, user_id: str, status: PresenceStatus, custom_status: str | None
    ) -> tuple[Presence, bool]: ...

    async def get(self, user_ids: list[str]) -> list[Presence]: ...
