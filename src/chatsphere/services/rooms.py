"""Room use cases: create, read, update, join, invite, leave, remove, roles, listings."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..clock import Clock
from ..domain.events import RoomEvent
from ..domain.rooms import (
    DEFAULT_SETTINGS,
    Member,
    MembershipState,
    Role,
    Room,
    RoomSummary,
    RoomType,
    check_can_invite,
    check_can_remove,
    check_can_set_role,
    dm_key,
    require_joined,
    require_role,
)
from ..errors import ChatError, ErrorCode, not_a_member, room_not_found
from ..ids import new_id
from ..ports.store import AddMember, ChangeRole, RemoveMember, Store, UpdateRoom
from ..protocol.views import SETTINGS_WIRE_TO_FIELD
from .access import Access

MAX_NAME = 200
MAX_DESCRIPTION = 2_000
MAX_PARTICIPANTS_AT_CREATE = 500


def settings_changes(raw: dict[str, Any] | None) -> dict[str, Any]:
    """Wire settings (camelCase) → validated field changes; unknown keys are refused."""
    if not raw:
        return {}
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        name = SETTINGS_WIRE_TO_FIELD.get(key)
        if name is None:
            raise ChatError(ErrorCode.INVALID_PAYLOAD, f"unknown room setting {key!r}")
        numeric = name in ("max_participants", "slow_mode_seconds")
        if numeric:
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 1_000_000:
                raise ChatError(ErrorCode.INVALID_PAYLOAD, f"setting {key!r} must be an integer")
        elif not isinstance(value, bool):
            raise ChatError(ErrorCode.INVALID_PAYLOAD, f"setting {key!r} must be true or false")
        changes[name] = value
    if changes.get("max_participants") == 0:
        raise ChatError(ErrorCode.INVALID_PAYLOAD, "maxParticipants must be at least 1")
    return changes


def _check_text(value: str | None, field: str, limit: int) -> None:
    if value is not None and (not value.strip() or len(value) > limit):
        raise ChatError(ErrorCode.INVALID_PAYLOAD, f"{field} must be 1 to {limit} characters")


class RoomService:
    def __init__(self, store: Store, access: Access, clock: Clock) -> None:
        self._store = store
        self._access = access
        self._clock = clock

    async def create_room(
        self,
        user_id: str,
        room_type: RoomType,
        name: str | None,
        *,
        description: str | None = None,
        settings: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        participants: list[str] | None = None,
    ) -> Room:
        """Create a room owned by ``user_id``; listed participants are invited.

        A direct message needs exactly one other participant; both are members at once,
        and asking again returns the existing room (one DM per pair).
        """
        others = list(dict.fromkeys(p for p in (participants or []) if p != user_id))
        if len(others) > MAX_PARTICIPANTS_AT_CREATE:
            raise ChatError(ErrorCode.INVALID_PAYLOAD, "too many participants at creation")
        _check_text(description, "description", MAX_DESCRIPTION)
        base = DEFAULT_SETTINGS[room_type]
        try:
            room_settings = base.merged(settings_changes(settings))
        except TypeError as exc:  # pragma: no cover - settings_changes filters names
            raise ChatError(ErrorCode.INVALID_PAYLOAD, str(exc)) from None
        now = self._clock.now()
        key = None
        if room_type is RoomType.DIRECT_MESSAGE:
            if len(others) != 1:
                raise ChatError(
                    ErrorCode.INVALID_PAYLOAD,
                    "a direct message needs exactly one other participant",
                )
            key = dm_key(user_id, others[0])
            existing = await self._store.find_dm(key)
            if existing is not None:
                return existing
            room_settings = replace(room_settings, is_private=True, max_participants=2)
            name = name or f"{user_id} & {others[0]}"
            members = [
                Member("", u, Role.MEMBER, MembershipState.JOINED, now)
                for u in (user_id, others[0])
            ]
        else:
            if not name:
                raise ChatError(ErrorCode.INVALID_PAYLOAD, "a room needs a name")
            members = [Member("", user_id, Role.OWNER, MembershipState.JOINED, now)] + [
                Member("", u, Role.MEMBER, MembershipState.INVITED, now, invited_by=user_id)
                for u in others
            ]
        _check_text(name, "name", MAX_NAME)
        room = Room(
            id=new_id(),
            type=room_type,
            name=name,
            description=description,
            created_by=user_id,
            settings=room_settings,
            metadata=metadata or {},
            created_at=now,
        )
        members = [replace(m, room_id=room.id) for m in members]
        try:
            await self._store.create_room(room, members, key)
        except ChatError as exc:
            if key is not None and exc.code is ErrorCode.CONFLICT:
                existing = await self._store.find_dm(key)  # lost a race with the other user
                if existing is not None:
                    return existing
            raise
        # A new room is not committed through the writer, so the commit listener (and
        # with it Access.observe) never sees it: drop the members' cached room lists
        # here, or presence would skip the room for up to the cache's TTL.
        for member in members:
            self._access.forget_member(room.id, member.user_id)
        joined = sum(1 for m in members if m.state is MembershipState.JOINED)
        return replace(room, last_seq=1, member_count=joined)

    async def get_room(self, user_id: str, room_id: str) -> tuple[Room, Member | None]:
        room = await self._store.get_room(room_id)
        if room is None:
            raise room_not_found(room_id)
        member = await self._store.get_member(room_id, user_id)
        if room.settings.is_private and member is None:
            raise room_not_found(room_id)
        return room, member

    async def update_room(
        self,
        user_id: str,
        room_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        settings: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Room:
        room, member = await self._access.joined(user_id, room_id)
        require_role(member, Role.ADMIN, "updating the room")
        _check_text(name, "name", MAX_NAME)
        _check_text(description, "description", MAX_DESCRIPTION)
        new_settings = room.settings.merged(settings_changes(settings)) if settings else None
        if room.type is RoomType.DIRECT_MESSAGE and new_settings is not None:
            new_settings = replace(new_settings, is_private=True, max_participants=2)
        event = await self._store.commit(
            UpdateRoom(
                room_id, user_id, self._clock.now(), name, description, new_settings, metadata
            )
        )
        updated = await self._store.get_room(room_id)
        if event is None or updated is None:  # pragma: no cover - commit always emits
            raise room_not_found(room_id)
        return updated

    async def join_room(self, user_id: str, room_id: str) -> tuple[Room, Member, RoomEvent | None]:
        """Become a joined member: public rooms are open, private ones need an invitation."""
        room = await self._store.get_room(room_id)
        if room is None:
            raise room_not_found(room_id)
        member = await self._store.get_member(room_id, user_id)
        if member is not None and member.state is MembershipState.JOINED:
            return room, member, None
        if room.settings.is_private and member is None:
            raise room_not_found(room_id)  # existence of private rooms does not leak
        joined = Member(
            room_id,
            user_id,
            member.role if member else Role.MEMBER,
            MembershipState.JOINED,
            self._clock.now(),
            invited_by=member.invited_by if member else None,
        )
        event = await self._store.commit(AddMember(joined, user_id))
        self._access.forget_member(room_id, user_id)
        return room, joined, event

    async def invite(self, user_id: str, room_id: str, target: str) -> RoomEvent | None:
        room, member = await self._access.joined(user_id, room_id)
        check_can_invite(room, member)
        if (await self._store.get_member(room_id, target)) is not None:
            raise ChatError(ErrorCode.ALREADY_MEMBER, f"{target!r} is already in the room")
        invited = Member(
            room_id,
            target,
            Role.MEMBER,
            MembershipState.INVITED,
            self._clock.now(),
            invited_by=user_id,
        )
        return await self._store.commit(AddMember(invited, user_id))

    async def remove_member(self, user_id: str, room_id: str, target: str) -> RoomEvent | None:
        """Leave (``target == user_id``) or remove someone (moderator+, lower role only)."""
        room = await self._store.get_room(room_id)
        if room is None:
            raise room_not_found(room_id)
        actor = await self._store.get_member(room_id, user_id)
        if actor is None:
            if room.settings.is_private:
                raise room_not_found(room_id)
            raise not_a_member(room_id)
        if target == user_id:
            if actor.role is Role.OWNER and room.type is not RoomType.DIRECT_MESSAGE:
                owners = [
                    m for m in await self._store.list_members(room_id) if m.role is Role.OWNER
                ]
                if len(owners) == 1 and room.member_count > 1:
                    raise ChatError(
                        ErrorCode.FORBIDDEN, "the last owner cannot leave; transfer ownership first"
                    )
            event = await self._store.commit(
                RemoveMember(room_id, user_id, user_id, self._clock.now())
            )
        else:
            require_joined(actor, room_id)
            victim = await self._store.get_member(room_id, target)
            if victim is None:
                raise ChatError(ErrorCode.NOT_FOUND, f"{target!r} is not in the room")
            check_can_remove(room_id, actor, victim)
            event = await self._store.commit(
                RemoveMember(room_id, target, user_id, self._clock.now())
            )
        self._access.forget_member(room_id, target)
        return event

    async def set_role(
        self, user_id: str, room_id: str, target: str, role: Role
    ) -> RoomEvent | None:
        _, actor = await self._access.joined(user_id, room_id)
        victim = await self._store.get_member(room_id, target)
        victim = require_joined(victim, room_id) if victim else None
        if victim is None:
            raise ChatError(ErrorCode.NOT_FOUND, f"{target!r} is not in the room")
        check_can_set_role(actor, victim, role)
        return await self._store.commit(
            ChangeRole(room_id, target, role, user_id, self._clock.now())
        )

    async def list_members(self, user_id: str, room_id: str) -> list[Member]:
        room, member = await self._access.visible(user_id, room_id)
        if room.settings.is_private:
            require_joined(member, room_id)
        return await self._store.list_members(room_id)

    async def list_my_rooms(self, user_id: str) -> list[RoomSummary]:
        return await self._store.list_user_rooms(user_id)

    async def list_public_rooms(
        self, limit: int = 50, offset: int = 0, query: str | None = None
    ) -> list[Room]:
        return await self._store.list_public_rooms(limit, offset, query)
