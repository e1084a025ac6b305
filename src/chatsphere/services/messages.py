"""Message use cases: send, edit, delete, react, read, history, threads, search, replay."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from ..clock import Clock
from ..domain.events import EventType, RoomEvent
from ..domain.messages import (
    Message,
    MessageEdit,
    MessageType,
    mentions_in,
    validate_content,
    validate_emoji,
)
from ..domain.rooms import Member, Role, Room, check_can_post
from ..domain.values import hot_value
from ..errors import ChatError, ErrorCode, message_not_found
from ..ids import new_id
from ..ports.ratelimit import RateLimiter
from ..ports.store import (
    AddReaction,
    DeleteMessage,
    EditMessage,
    PostMessage,
    RemoveReaction,
    Store,
    StoredEvent,
)
from .access import Access
from .publisher import Publisher

MAX_METADATA_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Limits:
    max_text: int = 10_000
    history_max: int = 200
    resume_max_events: int = 10_000


@hot_value
class SendRequest:
    """A message a user asks to send: :meth:`MessageService.send_message`'s arguments."""

    room_id: str
    content: dict[str, Any]
    message_type: MessageType = MessageType.TEXT
    client_message_id: str | None = None
    reply_to: str | None = None
    metadata: dict[str, Any] | None = None


class SendResult:
    """What :meth:`MessageService.send_message` stored.

    ``duplicate`` is true for a retry of an already-stored ``clientMessageId``: nothing
    new was delivered. ``frame`` is the message's ``new_message`` event as sent on the
    wire (None for a duplicate), whose data the WebSocket ack reuses as encoded.
    ``message`` is built on first use: the WebSocket path needs it only for a duplicate.
    """

    __slots__ = ("_message", "_seq", "duplicate", "frame")

    def __init__(
        self,
        message: Message,
        duplicate: bool,
        seq: int | None = None,
        frame: bytes | None = None,
    ) -> None:
        self._message = message
        self._seq = seq
        self.duplicate = duplicate
        self.frame = frame

    @property
    def message(self) -> Message:
        """The stored message, with the ``seq`` the store gave it."""
        if self._seq is not None:
            self._message = replace(self._message, seq=self._seq)
            self._seq = None
        return self._message


class MessageService:
    def __init__(
        self,
        store: Store,
        access: Access,
        publisher: Publisher,
        clock: Clock,
        limiter: RateLimiter,
        limits: Limits,
    ) -> None:
        self._store = store
        self._access = access
        self._publisher = publisher
        self._clock = clock
        self._limiter = limiter
        self.limits = limits

    # -- writes ------------------------------------------------------------------
    async def send_message(
        self,
        user_id: str,
        room_id: str,
        content: dict[str, Any],
        *,
        message_type: MessageType = MessageType.TEXT,
        client_message_id: str | None = None,
        reply_to: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> SendResult:
        """Store and deliver a message; returns once it is durable.

        A retry with a ``client_message_id`` this sender already used in this room
        returns the original message (``duplicate=True``) and delivers nothing.
        """
        request = SendRequest(room_id, content, message_type, client_message_id, reply_to, metadata)
        return await self.send(user_id, request)

    async def send(self, user_id: str, request: SendRequest) -> SendResult:
        """:meth:`send_message` with its arguments in one value."""
        room, member = await self._access.joined(user_id, request.room_id)
        self._check_send(room, member, user_id, request)
        reply_to = request.reply_to
        if reply_to is not None:
            if not room.settings.allow_threads:
                raise ChatError(ErrorCode.FORBIDDEN, "threads are off in this room")
            parent = await self._store.get_message(reply_to)
            if parent is None or parent.room_id != request.room_id:
                raise message_not_found(reply_to)
        draft = self._draft(user_id, request)
        try:
            event = await self._store.commit(PostMessage(draft))
        except ChatError as exc:
            return await self.stored_duplicate(draft, exc)
        return self.sent(draft, event)

    def draft_now(self, user_id: str, request: SendRequest) -> Message | None:
        """:meth:`send`'s checks and draft without waiting, for :meth:`post_nowait`.

        None when they need a store read (the room or the membership is not cached, or
        the message replies to another): then call :meth:`send`. Raises what
        :meth:`send` would refuse the send with.
        """
        if request.reply_to is not None:
            return None
        found = self._access.joined_cached(user_id, request.room_id)
        if found is None:
            return None
        room, member = found
        self._check_send(room, member, user_id, request)
        return self._draft(user_id, request)

    def post_nowait(self, draft: Message) -> asyncio.Future[RoomEvent | None]:
        """Hand a draft from :meth:`draft_now` to the store; see :meth:`sent` and
        :meth:`stored_duplicate` for what its outcome means. Posts commit in the order
        they were handed over."""
        return self._store.commit_nowait(PostMessage(draft))

    @staticmethod
    def sent(draft: Message, event: RoomEvent | None) -> SendResult:
        """The result of a send whose post committed as ``event``."""
        assert event is not None  # a post always makes an event
        return SendResult(draft, duplicate=False, seq=event.seq, frame=event.frame)

    async def stored_duplicate(self, draft: Message, refusal: ChatError) -> SendResult:
        """The original message, if the store refused ``draft`` because its
        ``client_message_id`` was stored already; otherwise ``refusal`` is raised."""
        # The store refuses a clientMessageId this sender already used in this room
        # (checked inside the commit's transaction, so no extra round trip per send).
        if refusal.code is ErrorCode.CONFLICT and draft.client_message_id is not None:
            original = await self._store.find_by_client_id(
                draft.room_id, draft.sender_id, draft.client_message_id
            )
            if original is not None:
                return SendResult(original, duplicate=True)
        raise refusal

    def _check_send(self, room: Room, member: Member, user_id: str, request: SendRequest) -> None:
        check_can_post(room, member)
        validate_content(request.message_type, request.content, self.limits.max_text, member)
        metadata = request.metadata
        if metadata and len(str(metadata)) > MAX_METADATA_BYTES:
            raise ChatError(ErrorCode.MESSAGE_TOO_LARGE, "metadata is too large")
        self._rate_limit(user_id)

    def _draft(self, user_id: str, request: SendRequest) -> Message:
        return Message(
            id=new_id(),
            room_id=request.room_id,
            sender_id=user_id,
            type=request.message_type,
            content=request.content,
            created_at=self._clock.now(),
            metadata=request.metadata or {},
            reply_to=request.reply_to,
            mentions=mentions_in(request.content),
            client_message_id=request.client_message_id,
        )

    def _rate_limit(self, user_id: str) -> None:
        wait = self._limiter.hit(f"send:{user_id}")
        if wait > 0:
            raise ChatError(
                ErrorCode.RATE_LIMITED, "sending too fast", {"retryAfter": round(wait, 3)}
            )

    async def _own_message(self, user_id: str, message_id: str) -> tuple[Message, Role]:
        message = await self._store.get_message(message_id)
        if message is None:
            raise message_not_found(message_id)
        try:
            _, member = await self._access.joined(user_id, message.room_id)
        except ChatError as exc:
            if exc.code is ErrorCode.ROOM_NOT_FOUND:
                raise message_not_found(message_id) from None
            raise
        if message.deleted:
            raise ChatError(ErrorCode.MESSAGE_DELETED, "the message was deleted")
        return message, member.role

    async def edit_message(self, user_id: str, message_id: str, content: dict[str, Any]) -> Message:
        message, _role = await self._own_message(user_id, message_id)
        if message.sender_id != user_id:
            raise ChatError(ErrorCode.FORBIDDEN, "only the sender can edit a message")
        if message.type not in (MessageType.TEXT, MessageType.MEDIA):
            raise ChatError(ErrorCode.FORBIDDEN, f"{message.type.value} messages cannot be edited")
        validate_content(message.type, content, self.limits.max_text, None)
        await self._store.commit(
            EditMessage(
                message.room_id,
                message_id,
                user_id,
                content,
                mentions_in(content),
                self._clock.now(),
            )
        )
        updated = await self._store.get_message(message_id)
        assert updated is not None
        return updated

    async def delete_message(self, user_id: str, message_id: str) -> Message:
        """Delete for everyone: the content is gone from history and from the event log."""
        message = await self._store.get_message(message_id)
        if message is None:
            raise message_not_found(message_id)
        try:
            _, member = await self._access.joined(user_id, message.room_id)
        except ChatError as exc:
            if exc.code is ErrorCode.ROOM_NOT_FOUND:
                raise message_not_found(message_id) from None
            raise
        if message.sender_id != user_id and member.role.rank < Role.MODERATOR.rank:
            raise ChatError(
                ErrorCode.FORBIDDEN, "only the sender or a room moderator can delete a message"
            )
        await self._store.commit(
            DeleteMessage(message.room_id, message_id, user_id, self._clock.now())
        )
        deleted = await self._store.get_message(message_id)
        assert deleted is not None
        return deleted

    async def add_reaction(self, user_id: str, message_id: str, emoji: str) -> Message:
        return await self._react(user_id, message_id, emoji, add=True)

    async def remove_reaction(self, user_id: str, message_id: str, emoji: str) -> Message:
        return await self._react(user_id, message_id, emoji, add=False)

    async def _react(self, user_id: str, message_id: str, emoji: str, *, add: bool) -> Message:
        validate_emoji(emoji)
        message, _ = await self._own_message(user_id, message_id)
        room = await self._access.room(message.room_id)
        if add and room is not None and not room.settings.allow_reactions:
            raise ChatError(ErrorCode.FORBIDDEN, "reactions are off in this room")
        now = self._clock.now()
        command = (
            AddReaction(message.room_id, message_id, user_id, emoji, now)
            if add
            else RemoveReaction(message.room_id, message_id, user_id, emoji, now)
        )
        await self._store.commit(command)
        updated = await self._store.get_message(message_id)
        assert updated is not None
        return updated

    async def mark_read(self, user_id: str, room_id: str, seq: int) -> int:
        await self._access.joined(user_id, room_id)
        room = await self._store.get_room(room_id)  # fresh: the cached one lags behind
        last = room.last_seq if room else seq
        stored = await self._store.mark_read(room_id, user_id, min(seq, last))
        self._publisher.ephemeral(
            room_id, EventType.READ_RECEIPT, {"userId": user_id, "seq": stored}
        )
        return stored

    # -- reads -------------------------------------------------------------------
    async def get_message(self, user_id: str, message_id: str) -> Message:
        message = await self._store.get_message(message_id)
        if message is None:
            raise message_not_found(message_id)
        try:
            await self._access.joined(user_id, message.room_id)
        except ChatError:
            raise message_not_found(message_id) from None
        return message

    async def history(
        self,
        user_id: str,
        room_id: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> list[Message]:
        await self._access.joined(user_id, room_id)
        size = min(limit or 50, self.limits.history_max)
        return await self._store.history(room_id, before, after, size)

    async def thread(self, user_id: str, message_id: str, limit: int = 100) -> list[Message]:
        root = await self.get_message(user_id, message_id)
        return await self._store.thread(root.id, min(limit, self.limits.history_max))

    async def search(
        self, user_id: str, room_id: str, query: str, limit: int = 20
    ) -> list[Message]:
        await self._access.joined(user_id, room_id)
        if not query.strip() or len(query) > 200:
            raise ChatError(ErrorCode.INVALID_PAYLOAD, "query must be 1 to 200 characters")
        return await self._store.search(room_id, query, min(limit, self.limits.history_max))

    async def edit_history(self, user_id: str, message_id: str) -> list[MessageEdit]:
        message = await self.get_message(user_id, message_id)
        return await self._store.edit_history(message.id)

    async def unread(self, user_id: str, room_id: str) -> tuple[int, int]:
        await self._access.joined(user_id, room_id)
        return await self._store.unread_count(room_id, user_id)

    async def check_joined(self, user_id: str, room_id: str) -> None:
        """Refuse (``room_not_found`` / ``not_a_member``) unless the user has joined."""
        await self._access.joined(user_id, room_id)

    async def replay(self, user_id: str, room_id: str, after_seq: int) -> list[StoredEvent]:
        """Every committed event after ``after_seq``, or ``resume_gap_too_large``."""
        await self._access.joined(user_id, room_id)
        cap = self.limits.resume_max_events
        events = await self._store.events_after(room_id, after_seq, cap + 1)
        if len(events) > cap:
            room = await self._store.get_room(room_id)
            raise ChatError(
                ErrorCode.RESUME_GAP_TOO_LARGE,
                f"more than {cap} events were missed; page history instead",
                {"oldestSeq": 1, "lastSeq": room.last_seq if room else None, "limit": cap},
            )
        return events
