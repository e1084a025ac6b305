"""protocol/views.py: the one camelCase <-> snake_case mapping and the wire shapes."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime

import orjson
import pytest

from chatsphere.domain.messages import Message, MessageEdit, MessageStatus, MessageType, Reaction
from chatsphere.domain.presence import Presence, PresenceStatus
from chatsphere.domain.rooms import (
    DEFAULT_SETTINGS,
    Member,
    MembershipState,
    Role,
    Room,
    RoomSettings,
    RoomSummary,
    RoomType,
)
from chatsphere.protocol.views import (
    SETTINGS_WIRE_TO_FIELD,
    camel,
    edit_view,
    member_view,
    message_view,
    presence_view,
    room_view,
    settings_view,
    snake,
    summary_view,
)

T0 = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
T1 = datetime(2024, 5, 6, 8, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("snake_name", "camel_name"),
    [
        ("room_id", "roomId"),
        ("chat_room_id", "chatRoomId"),
        ("created_at", "createdAt"),
        ("max_participants", "maxParticipants"),
        ("slow_mode_seconds", "slowModeSeconds"),
        ("type", "type"),
    ],
)
def test_camel_and_snake_are_inverse(snake_name: str, camel_name: str) -> None:
    assert camel(snake_name) == camel_name
    assert snake(camel_name) == snake_name


def test_every_setting_round_trips_through_its_wire_name() -> None:
    for field in fields(RoomSettings):
        assert SETTINGS_WIRE_TO_FIELD[camel(field.name)] == field.name
    assert len(SETTINGS_WIRE_TO_FIELD) == len(fields(RoomSettings))


def test_settings_view_uses_camel_case() -> None:
    view = settings_view(DEFAULT_SETTINGS[RoomType.DIRECT_MESSAGE])
    assert view["isPrivate"] is True
    assert view["maxParticipants"] == 2
    assert "max_participants" not in view
    assert set(view) == set(SETTINGS_WIRE_TO_FIELD)


def make_room() -> Room:
    return Room(
        id="r1",
        type=RoomType.GROUP_CHAT,
        name="Fans",
        description="d",
        created_by="alice",
        settings=DEFAULT_SETTINGS[RoomType.GROUP_CHAT],
        metadata={"k": 1},
        created_at=T0,
        last_seq=9,
        member_count=3,
    )


def test_room_view_keys_and_values() -> None:
    view = room_view(make_room())
    assert set(view) == {
        "id",
        "type",
        "name",
        "description",
        "createdBy",
        "settings",
        "metadata",
        "createdAt",
        "updatedAt",
        "lastSeq",
        "memberCount",
    }
    assert view["type"] == "group_chat"
    assert view["createdBy"] == "alice"
    assert view["createdAt"] == "2024-05-06T07:08:09.123Z"
    assert view["updatedAt"] is None
    assert (view["lastSeq"], view["memberCount"]) == (9, 3)
    orjson.dumps(view)  # wire-ready


def test_member_and_summary_views() -> None:
    member = Member("r1", "bob", Role.MODERATOR, MembershipState.INVITED, T0, "alice", 4)
    assert member_view(member) == {
        "userId": "bob",
        "role": "moderator",
        "state": "invited",
        "joinedAt": "2024-05-06T07:08:09.123Z",
        "invitedBy": "alice",
        "lastReadSeq": 4,
    }
    summary = summary_view(RoomSummary(make_room(), member, 5, 2))
    assert summary["id"] == "r1"
    assert summary["membership"]["userId"] == "bob"
    assert (summary["unreadCount"], summary["unreadMentions"]) == (5, 2)


def test_message_view_uses_the_seed_names() -> None:
    message = Message(
        id="m1",
        room_id="r1",
        sender_id="alice",
        type=MessageType.TEXT,
        content={"text": "hi @bob"},
        created_at=T0,
        seq=12,
        metadata={"m": True},
        reply_to="m0",
        mentions=("bob",),
        client_message_id="c1",
        status=MessageStatus.EDITED,
        updated_at=T1,
        reactions=(Reaction("👍", ("bob", "carol")),),
        reply_count=2,
    )
    view = message_view(message)
    assert view == {
        "id": "m1",
        "chatRoomId": "r1",
        "senderId": "alice",
        "type": "text",
        "content": {"text": "hi @bob"},
        "metadata": {"m": True},
        "reactions": [{"emoji": "👍", "userIds": ["bob", "carol"], "count": 2}],
        "replyTo": "m0",
        "replyCount": 2,
        "mentions": ["bob"],
        "clientMessageId": "c1",
        "status": "edited",
        "seq": 12,
        "createdAt": "2024-05-06T07:08:09.123Z",
        "updatedAt": "2024-05-06T08:00:00.000Z",
    }
    orjson.dumps(view)


def test_edit_and_presence_views() -> None:
    assert edit_view(MessageEdit("m1", {"text": "old"}, T1, "alice")) == {
        "messageId": "m1",
        "content": {"text": "old"},
        "editedAt": "2024-05-06T08:00:00.000Z",
        "editedBy": "alice",
    }
    assert presence_view(Presence("bob", PresenceStatus.AWAY, "lunch", T1, 2)) == {
        "userId": "bob",
        "status": "away",
        "customStatus": "lunch",
        "lastSeen": "2024-05-06T08:00:00.000Z",
    }
    assert presence_view(Presence("bob", PresenceStatus.OFFLINE, None, None))["lastSeen"] is None
