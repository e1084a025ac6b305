"""Rooms, memberships and who may do what in them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any

from ..errors import ChatError, ErrorCode, not_a_member


class RoomType(StrEnum):
    DIRECT_MESSAGE = "direct_message"
    GROUP_CHAT = "group_chat"
    PUBLIC_ROOM = "public_room"
    CREATOR_ROOM = "creator_room"
    LIVE_STREAM = "live_stream"
    FAN_CLUB = "fan_club"
    SUPPORT_CHAT = "support_chat"


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MODERATOR = "moderator"
    MEMBER = "member"

    @property
    def rank(self) -> int:
        return _RANK[self]


class _Rank(IntEnum):
    MEMBER = 0
    MODERATOR = 1
    ADMIN = 2
    OWNER = 3


_RANK = {
    Role.MEMBER: _Rank.MEMBER,
    Role.MODERATOR: _Rank.MODERATOR,
    Role.ADMIN: _Rank.ADMIN,
    Role.OWNER: _Rank.OWNER,
}


class MembershipState(StrEnum):
    INVITED = "invited"
    JOINED = "joined"


@dataclass(frozen=True, slots=True)
class RoomSettings:
    """Per-room switches. Wire names are the camelCase of these fields."""

    is_private: bool = False
    allow_voice_calls: bool = True
    allow_video_calls: bool = True
    content_filtering: bool = True
    max_participants: int = 10_000
    allow_reactions: bool = True
    allow_threads: bool = True
    read_only: bool = False  # only moderators and above may post
    slow_mode_seconds: int = 0
    age_restricted: bool = False

    def merged(self, changes: dict[str, Any]) -> RoomSettings:
        return replace(self, **changes)


#: The settings a new room of each type starts with (a creator may override any).
DEFAULT_SETTINGS: dict[RoomType, RoomSettings] = {
    RoomType.DIRECT_MESSAGE: RoomSettings(is_private=True, max_participants=2),
    RoomType.GROUP_CHAT: RoomSettings(is_private=True, max_participants=250),
    RoomType.PUBLIC_ROOM: RoomSettings(is_private=False, max_participants=100_000),
    RoomType.CREATOR_ROOM: RoomSettings(is_private=False, max_participants=100_000),
    RoomType.LIVE_STREAM: RoomSettings(
        is_private=False,
        max_participants=100_000,
        allow_voice_calls=False,
        allow_video_calls=False,
        allow_threads=False,
    ),
    RoomType.FAN_CLUB: RoomSettings(is_private=True, max_participants=100_000),
    RoomType.SUPPORT_CHAT: RoomSettings(is_private=True, max_participants=20),
}


@dataclass(frozen=True, slots=True)
class Room:
    id: str
    type: RoomType
    name: str
    description: str | None
    created_by: str
    settings: RoomSettings
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime | None = None
    last_seq: int = 0
    member_count: int = 0


@dataclass(frozen=True, slots=True)
class Member:
    room_id: str
    user_id: str
    role: Role
    state: MembershipState
    joined_at: datetime
    invited_by: str | None = None
    last_read_seq: int = 0


@dataclass(frozen=True, slots=True)
class RoomSummary:
    """A room as one member sees it in their room list."""

    room: Room
    member: Member
    unread_count: int
    unread_mentions: int
    last_message: Any = field(default=None)


def dm_key(user_a: str, user_b: str) -> str:
    """The unique key of the direct-message room between two users, order-free."""
    first, second = sorted((user_a, user_b))
    return f"{first}\x1f{second}"


def is_joined(member: Member | None) -> bool:
    return member is not None and member.state is MembershipState.JOINED


def require_joined(member: Member | None, room_id: str) -> Member:
    """The caller's membership, or ``not_a_member``."""
    if member is None or member.state is not MembershipState.JOINED:
        raise not_a_member(room_id)
    return member


def require_role(member: Member, at_least: Role, action: str) -> None:
    if member.role.rank < at_least.rank:
        raise ChatError(
            ErrorCode.FORBIDDEN, f"{action} needs role {at_least.value} or above in this room"
        )


def can_see(room: Room, member: Member | None) -> bool:
    """Whether a user may learn the room exists and read its profile."""
    return not room.settings.is_private or member is not None


def check_can_post(room: Room, member: Member) -> None:
    if room.settings.read_only and member.role.rank < Role.MODERATOR.rank:
        raise ChatError(ErrorCode.FORBIDDEN, "this room is read-only for members")


def check_can_invite(room: Room, inviter: Member) -> None:
    if room.type is RoomType.DIRECT_MESSAGE:
        raise ChatError(ErrorCode.FORBIDDEN, "direct-message rooms have exactly two members")
    if room.type is not RoomType.GROUP_CHAT:
        require_role(inviter, Role.MODERATOR, "inviting")


def check_can_remove(room_id: str, actor: Member, target: Member) -> None:
    """A member may leave; removing someone else needs a higher role (moderator+)."""
    if actor.user_id == target.user_id:
        return
    require_role(actor, Role.MODERATOR, "removing a member")
    if target.role.rank >= actor.role.rank:
        raise ChatError(
            ErrorCode.FORBIDDEN, f"cannot remove a {target.role.value} of room {room_id!r}"
        )


def check_can_set_role(actor: Member, target: Member, new_role: Role) -> None:
    require_role(actor, Role.ADMIN, "changing roles")
    if new_role is Role.OWNER or target.role is Role.OWNER:
        raise ChatError(ErrorCode.FORBIDDEN, "ownership cannot be changed this way")
    if new_role.rank >= actor.role.rank and actor.role is not Role.OWNER:
        raise ChatError(ErrorCode.FORBIDDEN, "cannot grant a role equal to or above your own")
    if target.role.rank >= actor.role.rank and actor.role is not Role.OWNER:
        # As in check_can_remove: a peer's role is not yours to change.
        raise ChatError(ErrorCode.FORBIDDEN, f"cannot change the role of a {target.role.value}")
