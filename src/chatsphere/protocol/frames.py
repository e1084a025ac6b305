"""Client → server frames as pydantic models.

These models are the single definition of the wire input: the gateway validates
every frame with them and the AsyncAPI document is generated from them.
Field names are the wire's camelCase; Python code reads them by attribute.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from ..domain.messages import MessageType
from ..domain.presence import PresenceStatus

Id = Annotated[StrictStr, Field(min_length=1, max_length=128)]
# Bounded as codec._readable_id: an id an error could not echo is refused, not acked.
FrameId = (
    Annotated[StrictStr, Field(max_length=128)] | Annotated[StrictInt, Field(ge=-(2**53), le=2**53)]
)
Seq = Annotated[StrictInt, Field(ge=0, le=2**53)]
Limit = Annotated[StrictInt, Field(ge=1, le=1000)]


class Frame(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: FrameId | None = Field(None, description="Echoed in the ack or error for this frame.")


class JoinRoom(Frame):
    """Join a room (public, or one you were invited to) and receive its live events."""

    type: Literal["join_room"]
    roomId: Id
    sinceSeq: Seq | None = Field(None, description="Replay events after this seq first.")


class LeaveRoom(Frame):
    """Leave a room: membership ends for every connection of the user."""

    type: Literal["leave_room"]
    roomId: Id


class SendMessage(Frame):
    """Post a message. Acked with the stored message once it is durable."""

    type: Literal["send_message"]
    roomId: Id
    content: dict[str, Any]
    messageType: MessageType = MessageType.TEXT
    clientMessageId: Id | None = None
    replyTo: Id | None = None
    metadata: dict[str, Any] | None = None


class Typing(Frame):
    """Start or stop the typing indicator; it stops on its own after a few seconds."""

    type: Literal["typing"]
    roomId: Id
    isTyping: StrictBool = True


class UpdatePresence(Frame):
    type: Literal["update_presence"]
    status: PresenceStatus
    customStatus: Annotated[StrictStr, Field(max_length=140)] | None = None


class AddReaction(Frame):
    type: Literal["add_reaction"]
    messageId: Id
    emoji: Annotated[StrictStr, Field(min_length=1, max_length=64)]


class RemoveReaction(Frame):
    type: Literal["remove_reaction"]
    messageId: Id
    emoji: Annotated[StrictStr, Field(min_length=1, max_length=64)]


class EditMessage(Frame):
    type: Literal["edit_message"]
    messageId: Id
    content: dict[str, Any]


class DeleteMessage(Frame):
    type: Literal["delete_message"]
    messageId: Id


class MarkRead(Frame):
    type: Literal["mark_read"]
    roomId: Id
    seq: Seq


class GetHistory(Frame):
    type: Literal["get_history"]
    roomId: Id
    before: Seq | None = None
    after: Seq | None = None
    limit: Limit | None = None


class Resume(Frame):
    """Replay every event after each room's last seen ``seq``, then go live."""

    type: Literal["resume"]
    rooms: dict[Annotated[StrictStr, Field(min_length=1, max_length=128)], Seq]


class Ping(Frame):
    type: Literal["ping"]


ClientFrame = Annotated[
    JoinRoom
    | LeaveRoom
    | SendMessage
    | Typing
    | UpdatePresence
    | AddReaction
    | RemoveReaction
    | EditMessage
    | DeleteMessage
    | MarkRead
    | GetHistory
    | Resume
    | Ping,
    Field(discriminator="type"),
]

FRAME_MODELS: dict[str, type[Frame]] = {
    model.model_fields["type"].annotation.__args__[0]: model  # type: ignore[union-attr]
    for model in (
        JoinRoom,
        LeaveRoom,
        SendMessage,
        Typing,
        UpdatePresence,
        AddReaction,
        RemoveReaction,
        EditMessage,
        DeleteMessage,
        MarkRead,
        GetHistory,
        Resume,
        Ping,
    )
}
