"""REST request and response bodies. Field names are the wire's camelCase."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from ..domain.messages import MessageType
from ..domain.presence import PresenceStatus
from ..domain.rooms import Role, RoomType
from ..errors import ChatError
from ..protocol.codec import check_wire_json

Name = Annotated[StrictStr, Field(min_length=1, max_length=200)]
Id = Annotated[StrictStr, Field(min_length=1, max_length=128)]


def _wire_json(value: dict[str, Any]) -> dict[str, Any]:
    """REST bodies are parsed more leniently than frames: hold them to the same JSON."""
    try:
        check_wire_json(value, "value")
    except ChatError as exc:
        raise ValueError(exc.message) from None
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_wire_json)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateRoomIn(Body):
    type: RoomType
    name: Name | None = None
    description: Annotated[StrictStr, Field(max_length=2000)] | None = None
    settings: dict[str, StrictBool | StrictInt] | None = None
    metadata: JsonObject | None = None
    participants: Annotated[list[Id], Field(max_length=500)] | None = None


class UpdateRoomIn(Body):
    name: Name | None = None
    description: Annotated[StrictStr, Field(max_length=2000)] | None = None
    settings: dict[str, StrictBool | StrictInt] | None = None
    metadata: JsonObject | None = None


class AddMemberIn(Body):
    userId: Id | None = Field(
        None, description="Omit (or your own id) to join; another id invites."
    )


class SetRoleIn(Body):
    role: Role


class SendMessageIn(Body):
    content: JsonObject
    type: MessageType = MessageType.TEXT
    replyTo: Id | None = None
    metadata: JsonObject | None = None
    clientMessageId: Id | None = Field(
        None, description="Same as the Idempotency-Key header; the header wins."
    )


class EditMessageIn(Body):
    content: JsonObject


class ReactionIn(Body):
    emoji: Annotated[StrictStr, Field(min_length=1, max_length=64)]


class MarkReadIn(Body):
    seq: Annotated[StrictInt, Field(ge=0, le=2**53)]


class TypingIn(Body):
    isTyping: StrictBool = True


class PresenceIn(Body):
    status: PresenceStatus
    customStatus: Annotated[StrictStr, Field(max_length=140)] | None = None


# -- responses -------------------------------------------------------------------


class Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class RoomSettingsOut(Out):
    isPrivate: bool
    allowVoiceCalls: bool
    allowVideoCalls: bool
    contentFiltering: bool
    maxParticipants: int
    allowReactions: bool
    allowThreads: bool
    readOnly: bool
    slowModeSeconds: int
    ageRestricted: bool


class MemberOut(Out):
    userId: str
    role: Role
    state: str
    joinedAt: str
    invitedBy: str | None
    lastReadSeq: int


class RoomOut(Out):
    id: str
    type: RoomType
    name: str
    description: str | None
    createdBy: str
    settings: RoomSettingsOut
    metadata: dict[str, Any]
    createdAt: str
    updatedAt: str | None
    lastSeq: int
    memberCount: int
    membership: MemberOut | None = None
    unreadCount: int | None = None
    unreadMentions: int | None = None


class ReactionOut(Out):
    emoji: str
    userIds: list[str]
    count: int


class MessageOut(Out):
    id: str
    chatRoomId: str
    senderId: str
    type: MessageType
    content: dict[str, Any]
    metadata: dict[str, Any]
    reactions: list[ReactionOut]
    replyTo: str | None
    replyCount: int
    mentions: list[str]
    clientMessageId: str | None
    status: str
    seq: int
    createdAt: str
    updatedAt: str | None


class MessagePageOut(Out):
    roomId: str
    messages: list[MessageOut]


class EditOut(Out):
    messageId: str
    content: dict[str, Any]
    editedAt: str
    editedBy: str


class PresenceOut(Out):
    userId: str
    status: PresenceStatus
    customStatus: str | None
    lastSeen: str | None


class ReadOut(Out):
    roomId: str
    seq: int


class UnreadOut(Out):
    roomId: str
    unreadCount: int
    unreadMentions: int


class ErrorDetail(Out):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorOut(Out):
    error: ErrorDetail


class HealthOut(Out):
    status: str
    version: str
    uptime: float
    store: bool
    bus: bool
    connections: int
    memory: dict[str, int]
    timestamp: str
