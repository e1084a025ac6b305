"""The Store port: durable rooms, memberships, messages and the room event log.

Writes that produce a room event are expressed as *write commands* (frozen dataclasses
below) and committed with :meth:`Store.commit`. The store assigns the event the next
``seq`` of its room inside the same transaction as the change, so the log has no gaps
and no reuse even with several writers; then it calls the commit listener with the
committed events, in ``seq`` order per room, before :meth:`Store.commit` returns.
Nothing is acknowledged to a client before that return.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ..domain.events import RoomEvent
from ..domain.messages import Message, MessageEdit
from ..domain.rooms import Member, Role, Room, RoomSettings, RoomSummary


@dataclass(frozen=True, slots=True)
class PostMessage:
    """Insert ``message`` (its ``seq`` is assigned by the store) → ``new_message``."""

    message: Message


@dataclass(frozen=True, slots=True)
class EditMessage:
    room_id: str
    message_id: str
    editor_id: str
    content: dict[str, Any]
    mentions: tuple[str, ...]
    at: datetime


@dataclass(frozen=True, slots=True)
class DeleteMessage:
    room_id: str
    message_id: str
    actor_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class AddReaction:
    room_id: str
    message_id: str
    user_id: str
    emoji: str
    at: datetime


@dataclass(frozen=True, slots=True)
class RemoveReaction:
    room_id: str
    message_id: str
    user_id: str
    emoji: str
    at: datetime


@dataclass(frozen=True, slots=True)
class AddMember:
    """Join (state joined) or invite (state invited); an invited member may be upgraded."""

    member: Member
    actor_id: str


@dataclass(frozen=True, slots=True)
class RemoveMember:
    room_id: str
    user_id: str
    actor_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ChangeRole:
    room_id: str
    user_id: str
    role: Role
    actor_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class UpdateRoom:
    room_id: str
    actor_id: str
    at: datetime
    name: str | None = None
    description: str | None = None
    settings: RoomSettings | None = None
    metadata: dict[str, Any] | None = None


WriteCommand = (
    PostMessage
    | EditMessage
    | DeleteMessage
    | AddReaction
    | RemoveReaction
    | AddMember
    | RemoveMember
    | ChangeRole
    | UpdateRoom
)

CommitListener = Callable[[Sequence[RoomEvent]], None]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    room_id: str
    seq: int
    type: str
    frame: bytes


class Store(Protocol):
    """Durable state of the chat. One implementation per SQL dialect family."""

    async def open(self) -> None:
        """Connect and bring the schema up to date (idempotent; safe after a crash)."""
        ...

    async def close(self) -> None:
        """Finish in-flight commits, then release connections."""
        ...

    async def ping(self) -> bool: ...

    def set_commit_listener(self, listener: CommitListener) -> None:
        """Called once per committed batch, after commit, with its events in ``seq`` order."""
        ...

    # -- writes --------------------------------------------------------------
    async def commit(self, command: WriteCommand) -> RoomEvent | None:
        """Apply ``command`` and append its room event, durably.

        Returns the committed event, or None when the command changed nothing
        (a reaction that was already there). Raises ``ChatError`` when the command's
        target vanished or changed state since the caller checked it.
        Idempotent sends: a :class:`PostMessage` whose ``client_message_id`` was
        already stored for the same sender and room raises ``ChatError(conflict)``.
        """
        ...

    def commit_nowait(self, command: WriteCommand) -> asyncio.Future[RoomEvent | None]:
        """:meth:`commit` without waiting: the future resolves as ``commit`` would return
        or raise. Commands commit in the order they were handed over, either way."""
        ...

    async def create_room(
        self, room: Room, members: Sequence[Member], dm_key: str | None
    ) -> RoomEvent:
        """Store a new room with its first members; its ``room_created`` event is seq 1.

        Raises ``ChatError(conflict)`` if ``dm_key`` is already taken.
        """
        ...

    async def mark_read(self, room_id: str, user_id: str, seq: int) -> int:
        """Move the read marker forward (never back); returns the marker now stored."""
        ...

    # -- reads ---------------------------------------------------------------
    async def get_room(self, room_id: str) -> Room | None: ...

    async def find_dm(self, dm_key: str) -> Room | None: ...

    async def list_public_rooms(self, limit: int, offset: int, query: str | None) -> list[Room]: ...

    async def list_user_rooms(self, user_id: str) -> list[RoomSummary]: ...

    async def get_member(self, room_id: str, user_id: str) -> Member | None: ...

    async def list_members(self, room_id: str) -> list[Member]: ...

    async def user_room_ids(self, user_id: str) -> list[str]: ...

    async def get_message(self, message_id: str) -> Message | None: ...

    async def find_by_client_id(
        self, room_id: str, sender_id: str, client_message_id: str
    ) -> Message | None: ...

    async def history(
        self, room_id: str, before: int | None, after: int | None, limit: int
    ) -> list[Message]:
        """Messages as they stand now, ascending by ``seq`` (see DESIGN.md for cursors)."""
        ...

    async def thread(self, message_id: str, limit: int) -> list[Message]: ...

    async def search(self, room_id: str, query: str, limit: int) -> list[Message]: ...

    async def edit_history(self, message_id: str) -> list[MessageEdit]: ...

    async def events_after(self, room_id: str, after_seq: int, limit: int) -> list[StoredEvent]:
        """Committed events with ``seq > after_seq`` in order, at most ``limit``."""
        ...

    async def unread_count(self, room_id: str, user_id: str) -> tuple[int, int]:
        """(unread messages, unread mentions) after the user's read marker."""
        ...
