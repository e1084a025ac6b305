"""domain/rooms.py: roles, default settings per room type and the permission rules."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from chatsphere.domain.rooms import (
    DEFAULT_SETTINGS,
    Member,
    MembershipState,
    Role,
    Room,
    RoomSettings,
    RoomType,
    can_see,
    check_can_invite,
    check_can_post,
    check_can_remove,
    check_can_set_role,
    dm_key,
    is_joined,
    require_joined,
    require_role,
)
from chatsphere.errors import ChatError, ErrorCode

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def room(kind: RoomType = RoomType.PUBLIC_ROOM, **settings: object) -> Room:
    return Room(
        id="r1",
        type=kind,
        name="Room",
        description=None,
        created_by="owner",
        settings=DEFAULT_SETTINGS[kind].merged(settings),
        metadata={},
        created_at=NOW,
    )


def member(
    user_id: str = "alice",
    role: Role = Role.MEMBER,
    state: MembershipState = MembershipState.JOINED,
) -> Member:
    return Member("r1", user_id, role, state, NOW)


def refused(code: ErrorCode, call: object, *args: object) -> ChatError:
    assert callable(call)
    with pytest.raises(ChatError) as info:
        call(*args)
    assert info.value.code is code
    return info.value


# -- roles ----------------------------------------------------------------------------


def test_role_ranks_are_ordered_member_moderator_admin_owner() -> None:
    ranks = [Role.MEMBER.rank, Role.MODERATOR.rank, Role.ADMIN.rank, Role.OWNER.rank]
    assert ranks == sorted(ranks)
    assert len(set(ranks)) == 4


def test_every_role_has_a_rank() -> None:
    for role in Role:
        assert isinstance(role.rank, int)


# -- default settings ------------------------------------------------------------------


def test_every_room_type_has_default_settings() -> None:
    assert set(DEFAULT_SETTINGS) == set(RoomType)
    assert len(DEFAULT_SETTINGS) == 7


@pytest.mark.parametrize(
    ("kind", "private", "max_participants"),
    [
        (RoomType.DIRECT_MESSAGE, True, 2),
        (RoomType.GROUP_CHAT, True, 250),
        (RoomType.PUBLIC_ROOM, False, 100_000),
        (RoomType.CREATOR_ROOM, False, 100_000),
        (RoomType.LIVE_STREAM, False, 100_000),
        (RoomType.FAN_CLUB, True, 100_000),
        (RoomType.SUPPORT_CHAT, True, 20),
    ],
)
def test_default_privacy_and_size_per_room_type(
    kind: RoomType, private: bool, max_participants: int
) -> None:
    settings = DEFAULT_SETTINGS[kind]
    assert settings.is_private is private
    assert settings.max_participants == max_participants
    assert settings.read_only is False


def test_live_streams_have_no_calls_or_threads_by_default() -> None:
    live = DEFAULT_SETTINGS[RoomType.LIVE_STREAM]
    assert (live.allow_voice_calls, live.allow_video_calls, live.allow_threads) == (
        False,
        False,
        False,
    )
    for kind in set(RoomType) - {RoomType.LIVE_STREAM}:
        other = DEFAULT_SETTINGS[kind]
        assert other.allow_voice_calls and other.allow_video_calls and other.allow_threads


def test_merged_settings_override_only_the_named_fields() -> None:
    base = DEFAULT_SETTINGS[RoomType.GROUP_CHAT]
    merged = base.merged({"read_only": True})
    assert merged.read_only is True
    assert merged == replace(base, read_only=True)
    assert base.read_only is False  # frozen: the default is not modified


def test_settings_are_frozen() -> None:
    settings = RoomSettings()
    with pytest.raises(AttributeError):
        settings.read_only = True  # type: ignore[misc]


# -- dm keys ---------------------------------------------------------------------------


def test_dm_key_does_not_depend_on_order() -> None:
    assert dm_key("alice", "bob") == dm_key("bob", "alice")


def test_dm_key_differs_per_pair() -> None:
    assert dm_key("alice", "bob") != dm_key("alice", "carol")
    # The separator keeps ("ab", "c") and ("a", "bc") apart.
    assert dm_key("ab", "c") != dm_key("a", "bc")


# -- membership checks -----------------------------------------------------------------


def test_require_joined_returns_the_membership() -> None:
    joined = member()
    assert require_joined(joined, "r1") is joined
    assert is_joined(joined)


def test_require_joined_refuses_strangers_and_invitees() -> None:
    refused(ErrorCode.NOT_A_MEMBER, require_joined, None, "r1")
    invited = member(state=MembershipState.INVITED)
    refused(ErrorCode.NOT_A_MEMBER, require_joined, invited, "r1")
    assert not is_joined(invited)
    assert not is_joined(None)


def test_require_role_compares_ranks() -> None:
    require_role(member(role=Role.ADMIN), Role.MODERATOR, "x")
    require_role(member(role=Role.MODERATOR), Role.MODERATOR, "x")
    error = refused(ErrorCode.FORBIDDEN, require_role, member(), Role.MODERATOR, "pinning")
    assert "pinning" in error.message


def test_private_rooms_are_visible_to_members_and_invitees_only() -> None:
    private = room(RoomType.GROUP_CHAT)
    assert not can_see(private, None)
    assert can_see(private, member(state=MembershipState.INVITED))
    assert can_see(room(RoomType.PUBLIC_ROOM), None)


# -- posting ---------------------------------------------------------------------------


def test_members_post_in_ordinary_rooms() -> None:
    check_can_post(room(), member())


def test_read_only_rooms_refuse_members_and_accept_moderators() -> None:
    read_only = room(read_only=True)
    refused(ErrorCode.FORBIDDEN, check_can_post, read_only, member())
    for role in (Role.MODERATOR, Role.ADMIN, Role.OWNER):
        check_can_post(read_only, member(role=role))


# -- inviting --------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
def test_direct_messages_refuse_invitations_from_anyone(role: Role) -> None:
    refused(ErrorCode.FORBIDDEN, check_can_invite, room(RoomType.DIRECT_MESSAGE), member(role=role))


def test_any_group_chat_member_may_invite() -> None:
    check_can_invite(room(RoomType.GROUP_CHAT), member())


@pytest.mark.parametrize(
    "kind",
    [
        RoomType.PUBLIC_ROOM,
        RoomType.CREATOR_ROOM,
        RoomType.LIVE_STREAM,
        RoomType.FAN_CLUB,
        RoomType.SUPPORT_CHAT,
    ],
)
def test_other_rooms_need_a_moderator_to_invite(kind: RoomType) -> None:
    refused(ErrorCode.FORBIDDEN, check_can_invite, room(kind), member())
    check_can_invite(room(kind), member(role=Role.MODERATOR))
    check_can_invite(room(kind), member(role=Role.OWNER))


# -- removing --------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
def test_anyone_may_leave(role: Role) -> None:
    check_can_remove("r1", member("alice", role), member("alice", role))


def test_moderator_may_remove_a_member() -> None:
    check_can_remove("r1", member("mod", Role.MODERATOR), member("bob"))


def test_member_may_not_remove_a_member() -> None:
    refused(ErrorCode.FORBIDDEN, check_can_remove, "r1", member("alice"), member("bob"))


def test_moderator_may_not_remove_an_equal_or_higher_role() -> None:
    mod = member("mod", Role.MODERATOR)
    refused(ErrorCode.FORBIDDEN, check_can_remove, "r1", mod, member("admin", Role.ADMIN))
    refused(ErrorCode.FORBIDDEN, check_can_remove, "r1", mod, member("mod2", Role.MODERATOR))
    refused(ErrorCode.FORBIDDEN, check_can_remove, "r1", mod, member("owner", Role.OWNER))


def test_owner_may_remove_an_admin_but_admin_not_the_owner() -> None:
    check_can_remove("r1", member("owner", Role.OWNER), member("admin", Role.ADMIN))
    refused(
        ErrorCode.FORBIDDEN,
        check_can_remove,
        "r1",
        member("admin", Role.ADMIN),
        member("owner", Role.OWNER),
    )


# -- roles -----------------------------------------------------------------------------


def test_members_and_moderators_may_not_change_roles() -> None:
    for role in (Role.MEMBER, Role.MODERATOR):
        refused(
            ErrorCode.FORBIDDEN,
            check_can_set_role,
            member("actor", role),
            member("bob"),
            Role.MODERATOR,
        )


def test_admin_may_grant_moderator_but_not_admin() -> None:
    admin = member("admin", Role.ADMIN)
    check_can_set_role(admin, member("bob"), Role.MODERATOR)
    check_can_set_role(admin, member("bob", Role.MODERATOR), Role.MEMBER)
    refused(ErrorCode.FORBIDDEN, check_can_set_role, admin, member("bob"), Role.ADMIN)


def test_owner_may_grant_admin() -> None:
    check_can_set_role(member("owner", Role.OWNER), member("bob"), Role.ADMIN)


def test_ownership_cannot_be_granted_or_taken_away() -> None:
    owner = member("owner", Role.OWNER)
    refused(ErrorCode.FORBIDDEN, check_can_set_role, owner, member("bob"), Role.OWNER)
    refused(
        ErrorCode.FORBIDDEN,
        check_can_set_role,
        member("admin", Role.ADMIN),
        member("owner", Role.OWNER),
        Role.MEMBER,
    )


def test_admin_may_not_change_the_role_of_another_admin() -> None:
    # Otherwise an admin could demote a peer and then remove them, which
    # check_can_remove forbids directly.
    admin = member("admin", Role.ADMIN)
    refused(ErrorCode.FORBIDDEN, check_can_set_role, admin, member("peer", Role.ADMIN), Role.MEMBER)
    check_can_set_role(member("owner", Role.OWNER), member("peer", Role.ADMIN), Role.MEMBER)
