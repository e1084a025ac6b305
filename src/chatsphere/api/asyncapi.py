"""The AsyncAPI 3.0 document of the WebSocket protocol, from the frame models themselves."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .. import __version__
from ..protocol.frames import FRAME_MODELS
from .schemas import ErrorOut, MessageOut, PresenceOut

_SERVER_EVENTS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "connected": ("First frame after the upgrade: userId, sessionId, heartbeatInterval.", None),
    "ack": ("Answer to a client frame that carried an `id`.", None),
    "error": ("A refusal: `error.code` is stable (see docs/protocol.md).", None),
    "pong": ("Answer to `ping`.", None),
    "new_message": (
        "Room event (has `seq`): `data` is a Message.",
        {"$ref": "#/components/schemas/MessageOut"},
    ),
    "message_edited": ("Room event: messageId, content, mentions, editedBy, updatedAt.", None),
    "message_deleted": ("Room event: messageId, deletedBy, deletedAt.", None),
    "reaction_added": ("Room event: messageId, emoji, userId.", None),
    "reaction_removed": ("Room event: messageId, emoji, userId.", None),
    "user_joined": ("Room event: the member who joined.", None),
    "user_left": ("Room event: userId, reason (left/removed), removedBy.", None),
    "user_invited": ("Room event: the invited member and invitedBy.", None),
    "role_changed": ("Room event: userId, role, changedBy.", None),
    "room_updated": ("Room event: the room after the change.", None),
    "room_created": ("Room event seq 1: the room and its first members.", None),
    "typing_started": ("Ephemeral: userId (never sent to the typist).", None),
    "typing_stopped": ("Ephemeral: userId; also sent after the typing timeout.", None),
    "presence_updated": (
        "Ephemeral, to rooms the user is in: a Presence.",
        {"$ref": "#/components/schemas/PresenceOut"},
    ),
    "read_receipt": ("Ephemeral: userId, seq.", None),
    "room_invitation": ("Personal: roomId, invitedBy.", None),
}


def build_asyncapi() -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (m, "validation") for m in FRAME_MODELS.values()
    ]
    models += [
        (MessageOut, "serialization"),
        (PresenceOut, "serialization"),
        (ErrorOut, "serialization"),
    ]
    _, schema = models_json_schema(models, ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = schema.get("$defs", {})
    messages: dict[str, Any] = {}
    for kind, model in FRAME_MODELS.items():
        messages[kind] = {
            "name": kind,
            "title": kind,
            "summary": (model.__doc__ or kind).strip().splitlines()[0],
            "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
        }
    for kind, (summary, data) in _SERVER_EVENTS.items():
        payload: dict[str, Any] = {
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {"const": kind},
                "id": {},
                "roomId": {"type": "string"},
                "seq": {"type": "integer"},
                "data": data or {"type": "object"},
            },
        }
        if kind == "error":
            payload["properties"]["error"] = {"$ref": "#/components/schemas/ErrorDetail"}
        messages[f"server.{kind}"] = {
            "name": kind,
            "title": kind,
            "summary": summary,
            "payload": payload,
        }
    client_refs = [{"$ref": f"#/channels/ws/messages/{k}"} for k in FRAME_MODELS]
    server_refs = [{"$ref": f"#/channels/ws/messages/server.{k}"} for k in _SERVER_EVENTS]
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "ChatSphere WebSocket protocol",
            "version": __version__,
            "description": (
                "JSON text frames over ws://HOST:WS_PORT/ws?token=JWT. See docs/protocol.md."
            ),
        },
        "servers": {"node": {"host": "localhost:8080", "protocol": "ws", "pathname": "/ws"}},
        "channels": {
            "ws": {
                "address": "/ws",
                "messages": {k: {"$ref": f"#/components/messages/{k}"} for k in messages},
            }
        },
        "operations": {
            "sendFrame": {
                "action": "receive",
                "channel": {"$ref": "#/channels/ws"},
                "messages": client_refs,
            },
            "receiveEvent": {
                "action": "send",
                "channel": {"$ref": "#/channels/ws"},
                "messages": server_refs,
            },
        },
        "components": {"schemas": schemas, "messages": messages},
    }
