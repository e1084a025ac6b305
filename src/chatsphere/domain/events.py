"""The one event model: room events with a per-room ``seq``, and ephemeral ones without.

A room event is committed to the store with the next ``seq`` of its room (1, 2, 3, …,
no gaps, no reuse). History, resume, unread counts and cross-node fan-out all read that
same sequence. Typing, presence and read receipts are ephemeral: they carry no ``seq``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from .values import hot_value


class EventType(StrEnum):
    NEW_MESSAGE = "new_message"
    MESSAGE_EDITED = "message_edited"
    MESSAGE_DELETED = "message_deleted"
    REACTION_ADDED = "reaction_added"
    REACTION_REMOVED = "reaction_removed"
    USER_JOINED = "user_joined"
    USER_LEFT = "user_left"
    USER_INVITED = "user_invited"
    ROLE_CHANGED = "role_changed"
    ROOM_UPDATED = "room_updated"
    ROOM_CREATED = "room_created"
    # ephemeral
    TYPING_STARTED = "typing_started"
    TYPING_STOPPED = "typing_stopped"
    PRESENCE_UPDATED = "presence_updated"
    READ_RECEIPT = "read_receipt"
    ROOM_INVITATION = "room_invitation"


#: Events that take a ``seq`` (everything else is ephemeral).
SEQUENCED = frozenset(
    {
        EventType.NEW_MESSAGE,
        EventType.MESSAGE_EDITED,
        EventType.MESSAGE_DELETED,
        EventType.REACTION_ADDED,
        EventType.REACTION_REMOVED,
        EventType.USER_JOINED,
        EventType.USER_LEFT,
        EventType.USER_INVITED,
        EventType.ROLE_CHANGED,
        EventType.ROOM_UPDATED,
        EventType.ROOM_CREATED,
    }
)


@hot_value
class RoomEvent:
    """A committed room event.

    ``frame`` is the event already encoded as the wire frame
    ``{"type","roomId","seq","data"}``: it is built once, at commit, and the same
    bytes go to every recipient and are replayed on resume.
    """

    room_id: str
    seq: int
    type: EventType
    data: dict[str, Any]
    frame: bytes
    actor_id: str | None = None
    message_id: str | None = None
