"""Presence (connection-driven, plus explicit statuses) and typing indicators."""

from __future__ import annotations

import asyncio

from ..clock import Clock
from ..domain.events import EventType
from ..domain.presence import MAX_CUSTOM_STATUS, Presence, PresenceStatus
from ..errors import ChatError, ErrorCode
from ..ports.presence import PresenceStore
from ..ports.store import Store
from ..protocol.views import presence_view
from .access import Access
from .publisher import Publisher


class PresenceService:
    """Tells a user's rooms when they come, go, or change status; runs typing timers.

    Presence is shown only to people who share a room with the user: it is published
    on the channels of the rooms the user has joined. Typing goes to the room's other
    members (never echoed to the typist) and stops on its own after ``typing_timeout``.
    """

    def __init__(
        self,
        store: Store,
        presence: PresenceStore,
        access: Access,
        publisher: Publisher,
        clock: Clock,
        typing_timeout: float,
    ) -> None:
        self._store = store
        self._presence = presence
        self._access = access
        self._publisher = publisher
        self._clock = clock
        self._typing_timeout = typing_timeout
        self._typing: dict[tuple[str, str], asyncio.TimerHandle] = {}
        # The rooms each user is typing in, so a disconnect finds theirs without a scan.
        self._typing_rooms: dict[str, set[str]] = {}

    async def _announce(self, presence: Presence) -> None:
        rooms = await self._access.user_rooms(presence.user_id)
        if not rooms:  # in no room yet (most first connects): nothing to build or send
            return
        data = presence_view(presence)
        for room_id in rooms:
            self._publisher.ephemeral(room_id, EventType.PRESENCE_UPDATED, data)

    async def connected(self, user_id: str, connection_id: str) -> Presence:
        presence, changed = await self._presence.connect(user_id, connection_id)
        if changed:
            await self._announce(presence)
        return presence

    async def disconnected(self, user_id: str, connection_id: str) -> Presence:
        presence, changed = await self._presence.disconnect(user_id, connection_id)
        if presence.connections == 0:
            for room_id in list(self._typing_rooms.get(user_id, ())):
                self._stop_typing(room_id, user_id)
        if changed:
            await self._announce(presence)
        return presence

    async def update(
        self, user_id: str, status: PresenceStatus, custom_status: str | None
    ) -> Presence:
        if custom_status is not None and len(custom_status) > MAX_CUSTOM_STATUS:
            raise ChatError(
                ErrorCode.INVALID_PAYLOAD, f"customStatus is over {MAX_CUSTOM_STATUS} characters"
            )
        presence, changed = await self._presence.set_status(user_id, status, custom_status)
        if changed:
            await self._announce(presence)
        return presence

    async def get(self, viewer_id: str, user_ids: list[str]) -> list[Presence]:
        """Presence of users who share at least one room with the viewer (or the viewer)."""
        mine = set(await self._store.user_room_ids(viewer_id))
        visible = []
        for user in dict.fromkeys(user_ids):
            if user == viewer_id or mine.intersection(await self._store.user_room_ids(user)):
                visible.append(user)
        return await self._presence.get(visible)

    async def room_presence(self, viewer_id: str, room_id: str) -> list[Presence]:
        await self._access.joined(viewer_id, room_id)
        members = await self._store.list_members(room_id)
        return await self._presence.get([m.user_id for m in members])

    async def set_typing(self, user_id: str, room_id: str, is_typing: bool) -> None:
        await self._access.joined(user_id, room_id)
        key = (room_id, user_id)
        handle = self._typing.pop(key, None)
        if handle is not None:
            handle.cancel()
        if not is_typing:
            if handle is not None:
                self._untrack_typing(room_id, user_id)
                self._publisher.ephemeral(
                    room_id, EventType.TYPING_STOPPED, {"userId": user_id}, exclude_user=user_id
                )
            return
        if handle is None:
            self._publisher.ephemeral(
                room_id, EventType.TYPING_STARTED, {"userId": user_id}, exclude_user=user_id
            )
        loop = asyncio.get_running_loop()
        self._typing[key] = loop.call_later(
            self._typing_timeout, self._stop_typing, room_id, user_id
        )
        self._typing_rooms.setdefault(user_id, set()).add(room_id)

    def _untrack_typing(self, room_id: str, user_id: str) -> None:
        rooms = self._typing_rooms.get(user_id)
        if rooms is not None:
            rooms.discard(room_id)
            if not rooms:
                del self._typing_rooms[user_id]

    def _stop_typing(self, room_id: str, user_id: str) -> None:
        handle = self._typing.pop((room_id, user_id), None)
        if handle is not None:
            handle.cancel()
            self._untrack_typing(room_id, user_id)
            self._publisher.ephemeral(
                room_id, EventType.TYPING_STOPPED, {"userId": user_id}, exclude_user=user_id
            )

    def message_sent(self, room_id: str, user_id: str) -> None:
        """A message ends its sender's typing indicator."""
        self._stop_typing(room_id, user_id)

    def close(self) -> None:
        for handle in self._typing.values():
            handle.cancel()
        self._typing.clear()
        self._typing_rooms.clear()
