"""Composition root: reads configuration, picks adapters, wires services.

This is the only module that imports adapters. :class:`ChatSphereService` is the
embeddable facade (the seed's API in Python naming); the network node
(:mod:`chatsphere.server`) is this facade behind the gateway and the REST API.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from .adapters.bus_memory import MemoryBroker
from .adapters.presence_memory import MemoryPresenceStore
from .adapters.ratelimit_memory import MemoryRateLimiter, NoRateLimiter
from .adapters.sql.store import SqlStore
from .auth import TokenAuthority
from .clock import Clock, SystemClock
from .config import AuthMode, BusKind, Settings, load_settings
from .domain.messages import Message, MessageEdit, MessageType
from .domain.presence import Presence, PresenceStatus
from .domain.rooms import Member, Role, Room, RoomSummary, RoomType
from .ports.bus import Broker
from .ports.presence import PresenceStore
from .ports.ratelimit import RateLimiter
from .protocol.codec import check_wire_json
from .services.access import Access
from .services.messages import Limits, MessageService, SendResult
from .services.presence import PresenceService
from .services.publisher import EventListener, Publisher
from .services.rooms import RoomService
from .timings import TimingLog

EventCallback = Callable[[str, str | None, dict[str, Any]], None]


def build_broker(settings: Settings) -> Broker:
    if settings.bus is BusKind.REDIS:
        raise NotImplementedError(
            "BUS=redis arrives with the scale-out work; use BUS=memory for a single node"
        )
    return MemoryBroker()


class ChatSphereService:
    """ChatSphere without a server: rooms, messages, reactions, presence, typing.

    Use as ``async with ChatSphereService(settings) as chat: ...`` or call
    :meth:`start` and :meth:`close`. Every method takes the acting user's id first and
    enforces the same permissions as the network API. ``on(event, callback)`` calls
    ``callback(event_type, room_id, data)`` for every event this node publishes.
    """

    def __init__(
        self,
        config: Settings | None = None,
        *,
        clock: Clock | None = None,
        broker: Broker | None = None,
        presence_store: PresenceStore | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self.settings = config or load_settings()
        s = self.settings
        self.clock: Clock = clock or SystemClock()
        self.started_at = time.time()
        self.timings = TimingLog(s.timings_log) if s.timings_log else None
        self.store = SqlStore(
            s.database_url, write_batch_max=s.write_batch_max, timings=self.timings
        )
        self.broker: Broker = broker or build_broker(s)
        self.presence_store: PresenceStore = presence_store or MemoryPresenceStore(self.clock)
        limiter: RateLimiter = rate_limiter or (
            MemoryRateLimiter(self.clock, s.rate_limit_messages_per_second, s.rate_limit_burst)
            if s.rate_limit_enabled
            else NoRateLimiter()
        )
        self.authority = TokenAuthority(
            s.effective_jwt_secret, issuer=s.jwt_issuer, allow_dev=s.auth_mode is AuthMode.DEV
        )
        self.access = Access(self.store, self.clock)
        self.publisher = Publisher(self.broker, self.access)
        self.store.set_commit_listener(self.publisher.committed)
        self.rooms = RoomService(self.store, self.access, self.clock)
        self.messages = MessageService(
            self.store,
            self.access,
            self.publisher,
            self.clock,
            limiter,
            Limits(s.max_message_length, s.history_max_limit, s.resume_max_events),
        )
        self.presence = PresenceService(
            self.store,
            self.presence_store,
            self.access,
            self.publisher,
            self.clock,
            s.typing_timeout,
        )
        self._started = False

    # -- lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        await self.store.open()
        await self.broker.start()
        if self.timings is not None:  # last: nothing above can fail and leave it open
            await self.timings.start()
        self._started = True

    async def close(self) -> None:
        """Commit what is in flight, then release the store and the bus."""
        if not self._started:
            return
        self._started = False
        self.presence.close()
        await self.store.close()
        await self.broker.close()
        if self.timings is not None:
            await self.timings.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def health(self) -> dict[str, Any]:
        return {"store": await self.store.ping(), "bus": await self.broker.ping()}

    def on(self, event: str, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(event_type, room_id, data)`` for ``event`` (or ``"*"`` for all).

        Returns a function that removes the callback.
        """

        def listener(kind: str, room_id: str | None, data: dict[str, Any]) -> None:
            if event in ("*", kind):
                callback(kind, room_id, data)

        typed: EventListener = listener
        self.publisher.add_listener(typed)
        return lambda: self.publisher.remove_listener(typed)

    # -- rooms -------------------------------------------------------------------
    async def create_chat_room(
        self,
        user_id: str,
        room_type: RoomType | str,
        name: str | None = None,
        *,
        description: str | None = None,
        settings: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        participants: list[str] | None = None,
    ) -> Room:
        if metadata is not None:
            check_wire_json(metadata, "metadata")
        return await self.rooms.create_room(
            user_id,
            RoomType(room_type),
            name,
            description=description,
            settings=settings,
            metadata=metadata,
            participants=participants,
        )

    async def get_chat_room(self, user_id: str, room_id: str) -> Room:
        room, _ = await self.rooms.get_room(user_id, room_id)
        return room

    async def update_chat_room(self, user_id: str, room_id: str, **changes: Any) -> Room:
        if changes.get("metadata") is not None:
            check_wire_json(changes["metadata"], "metadata")
        return await self.rooms.update_room(user_id, room_id, **changes)

    async def join_chat_room(self, user_id: str, room_id: str) -> Member:
        _, member, _ = await self.rooms.join_room(user_id, room_id)
        return member

    async def invite_to_chat_room(self, user_id: str, room_id: str, invitee: str) -> None:
        await self.rooms.invite(user_id, room_id, invitee)

    async def leave_chat_room(self, user_id: str, room_id: str) -> None:
        await self.rooms.remove_member(user_id, room_id, user_id)

    async def remove_member(self, user_id: str, room_id: str, target: str) -> None:
        await self.rooms.remove_member(user_id, room_id, target)

    async def set_member_role(self, user_id: str, room_id: str, target: str, role: Role) -> None:
        await self.rooms.set_role(user_id, room_id, target, role)

    async def list_members(self, user_id: str, room_id: str) -> list[Member]:
        return await self.rooms.list_members(user_id, room_id)

    async def list_my_rooms(self, user_id: str) -> list[RoomSummary]:
        return await self.rooms.list_my_rooms(user_id)

    async def list_public_rooms(self, limit: int = 50, offset: int = 0) -> list[Room]:
        return await self.rooms.list_public_rooms(limit, offset)

    # -- messages ----------------------------------------------------------------
    async def send_message(
        self,
        user_id: str,
        room_id: str,
        content: dict[str, Any] | str,
        *,
        message_type: MessageType | str = MessageType.TEXT,
        client_message_id: str | None = None,
        reply_to: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Message:
        body = {"text": content} if isinstance(content, str) else content
        check_wire_json(body, "content")
        if metadata is not None:
            check_wire_json(metadata, "metadata")
        result: SendResult = await self.messages.send_message(
            user_id,
            room_id,
            body,
            message_type=MessageType(message_type),
            client_message_id=client_message_id,
            reply_to=reply_to,
            metadata=metadata,
        )
        self.presence.message_sent(room_id, user_id)
        return result.message

    async def edit_message(
        self, user_id: str, message_id: str, content: dict[str, Any] | str
    ) -> Message:
        body = {"text": content} if isinstance(content, str) else content
        check_wire_json(body, "content")
        return await self.messages.edit_message(user_id, message_id, body)

    async def delete_message(self, user_id: str, message_id: str) -> Message:
        return await self.messages.delete_message(user_id, message_id)

    async def add_reaction(self, user_id: str, message_id: str, emoji: str) -> Message:
        return await self.messages.add_reaction(user_id, message_id, emoji)

    async def remove_reaction(self, user_id: str, message_id: str, emoji: str) -> Message:
        return await self.messages.remove_reaction(user_id, message_id, emoji)

    async def get_message(self, user_id: str, message_id: str) -> Message:
        return await self.messages.get_message(user_id, message_id)

    async def get_history(
        self,
        user_id: str,
        room_id: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> list[Message]:
        return await self.messages.history(
            user_id, room_id, before=before, after=after, limit=limit
        )

    async def get_thread(self, user_id: str, message_id: str) -> list[Message]:
        return await self.messages.thread(user_id, message_id)

    async def get_edit_history(self, user_id: str, message_id: str) -> list[MessageEdit]:
        return await self.messages.edit_history(user_id, message_id)

    async def search_messages(self, user_id: str, room_id: str, query: str) -> list[Message]:
        return await self.messages.search(user_id, room_id, query)

    async def mark_read(self, user_id: str, room_id: str, seq: int) -> int:
        return await self.messages.mark_read(user_id, room_id, seq)

    async def unread_count(self, user_id: str, room_id: str) -> int:
        count, _ = await self.messages.unread(user_id, room_id)
        return count

    # -- presence and typing -----------------------------------------------------
    async def update_presence(
        self, user_id: str, status: PresenceStatus | str, custom_status: str | None = None
    ) -> Presence:
        return await self.presence.update(user_id, PresenceStatus(status), custom_status)

    async def get_presence(self, user_id: str, user_ids: list[str]) -> list[Presence]:
        return await self.presence.get(user_id, user_ids)

    async def set_typing(self, user_id: str, room_id: str, is_typing: bool = True) -> None:
        await self.presence.set_typing(user_id, room_id, is_typing)
