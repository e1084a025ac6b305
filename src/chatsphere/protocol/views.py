"""Domain values as wire JSON (camelCase). The one place the names are mapped."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from ..clock import isoformat
from ..domain.messages import Message, MessageEdit
from ..domain.presence import Presence
from ..domain.rooms import Member, Room, RoomSettings, RoomSummary


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


_SETTINGS_FIELDS = [f.name for f in fields(RoomSettings)]
SETTINGS_WIRE_TO_FIELD = {camel(name): name for name in _SETTINGS_FIELDS}


def settings_view(settings: RoomSettings) -> dict[str, Any]:
    return {camel(name): getattr(settings, name) for name in _SETTINGS_FIELDS}


def room_view(room: Room) -> dict[str, Any]:
    return {
        "id": room.id,
        "type": room.type.value,
        "name": room.name,
        "description": room.description,
        "createdBy": room.created_by,
        "settings": settings_view(room.settings),
        "metadata": room.metadata,
        "createdAt": isoformat(room.created_at),
        "updatedAt": isoformat(room.updated_at) if room.updated_at else None,
        "lastSeq": room.last_seq,
        "memberCount": room.member_count,
    }


def member_view(member: Member) -> dict[str, Any]:
    return {
        "userId": member.user_id,
        "role": member.role.value,
        "state": member.state.value,
        "joinedAt": isoformat(member.joined_at),
        "invitedBy": member.invited_by,
        "lastReadSeq": member.last_read_seq,
    }


def summary_view(summary: RoomSummary) -> dict[str, Any]:
    body = room_view(summary.room)
    body["membership"] = member_view(summary.member)
    body["unreadCount"] = summary.unread_count
    body["unreadMentions"] = summary.unread_mentions
    return body


def message_view(message: Message) -> dict[str, Any]:
    """The seed's Message shape plus ``seq``, ``mentions`` and thread counters."""
    return {
        "id": message.id,
        "chatRoomId": message.room_id,
        "senderId": message.sender_id,
        "type": message.type.value,
        "content": message.content,
        "metadata": message.metadata,
        "reactions": [
            {"emoji": r.emoji, "userIds": list(r.user_ids), "count": len(r.user_ids)}
            for r in message.reactions
        ],
        "replyTo": message.reply_to,
        "replyCount": message.reply_count,
        "mentions": list(message.mentions),
        "clientMessageId": message.client_message_id,
        "status": message.status.value,
        "seq": message.seq,
        "createdAt": isoformat(message.created_at),
        "updatedAt": isoformat(message.updated_at) if message.updated_at else None,
    }


def edit_view(edit: MessageEdit) -> dict[str, Any]:
    return {
        "messageId": edit.message_id,
        "content": edit.content,
        "editedAt": isoformat(edit.edited_at),
        "editedBy": edit.edited_by,
    }


def presence_view(presence: Presence) -> dict[str, Any]:
    return {
        "userId": presence.user_id,
        "status": presence.status.value,
        "customStatus": presence.custom_status,
        "lastSeen": isoformat(presence.last_seen) if presence.last_seen else None,
    }
