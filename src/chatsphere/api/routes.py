"""``/api/v1``: the same operations as the Python API, as resources."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response, status

from ..errors import ChatError, ErrorCode
from ..protocol.views import (
    edit_view,
    member_view,
    message_view,
    presence_view,
    room_view,
    summary_view,
)
from .deps import Caller, Service
from .schemas import (
    AddMemberIn,
    CreateRoomIn,
    EditMessageIn,
    EditOut,
    ErrorOut,
    MarkReadIn,
    MemberOut,
    MessageOut,
    MessagePageOut,
    PresenceIn,
    PresenceOut,
    ReactionIn,
    ReadOut,
    RoomOut,
    SendMessageIn,
    SetRoleIn,
    TypingIn,
    UnreadOut,
    UpdateRoomIn,
)

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 410, 413, 422, 429)
}
router = APIRouter(prefix="/api/v1", responses=_ERRORS)

Seq = Annotated[int | None, Query(ge=0, le=2**53)]
Limit = Annotated[int | None, Query(ge=1, le=1000)]


# -- rooms ----------------------------------------------------------------------------
@router.post("/rooms", status_code=status.HTTP_201_CREATED, response_model=RoomOut, tags=["rooms"])
async def create_room(body: CreateRoomIn, caller: Caller, service: Service) -> dict[str, Any]:
    """Create a room you own; `participants` are invited (a DM's other user joins at once)."""
    room = await service.rooms.create_room(
        caller.user_id,
        body.type,
        body.name,
        description=body.description,
        settings=body.settings,
        metadata=body.metadata,
        participants=body.participants,
    )
    return room_view(room)


@router.get("/rooms", response_model=list[RoomOut], tags=["rooms"])
async def list_rooms(
    caller: Caller,
    service: Service,
    public: bool = False,
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[dict[str, Any]]:
    """Your rooms with unread counts, or with `public=true` the public directory."""
    if public:
        return [room_view(r) for r in await service.rooms.list_public_rooms(limit, offset, q)]
    return [summary_view(s) for s in await service.rooms.list_my_rooms(caller.user_id)]


@router.get("/rooms/{room_id}", response_model=RoomOut, tags=["rooms"])
async def get_room(room_id: str, caller: Caller, service: Service) -> dict[str, Any]:
    room, member = await service.rooms.get_room(caller.user_id, room_id)
    body = room_view(room)
    if member is not None:
        body["membership"] = member_view(member)
        unread, mentions = await service.store.unread_count(room_id, caller.user_id)
        body["unreadCount"], body["unreadMentions"] = unread, mentions
    return body


@router.patch("/rooms/{room_id}", response_model=RoomOut, tags=["rooms"])
async def update_room(
    room_id: str, body: UpdateRoomIn, caller: Caller, service: Service
) -> dict[str, Any]:
    """Change name, description, settings or metadata (room admins and owners)."""
    room = await service.rooms.update_room(
        caller.user_id,
        room_id,
        name=body.name,
        description=body.description,
        settings=body.settings,
        metadata=body.metadata,
    )
    return room_view(room)


@router.get("/rooms/{room_id}/members", response_model=list[MemberOut], tags=["members"])
async def list_members(room_id: str, caller: Caller, service: Service) -> list[dict[str, Any]]:
    return [member_view(m) for m in await service.rooms.list_members(caller.user_id, room_id)]


@router.post(
    "/rooms/{room_id}/members",
    response_model=MemberOut,
    tags=["members"],
    status_code=status.HTTP_201_CREATED,
)
async def add_member(
    room_id: str, body: AddMemberIn, caller: Caller, service: Service
) -> dict[str, Any]:
    """Join (no `userId`, or your own) or invite someone (`userId`)."""
    if body.userId is None or body.userId == caller.user_id:
        _, joined, _ = await service.rooms.join_room(caller.user_id, room_id)
        return member_view(joined)
    await service.rooms.invite(caller.user_id, room_id, body.userId)
    invited = await service.store.get_member(room_id, body.userId)
    if invited is None:  # pragma: no cover - the invite was just committed
        raise ChatError(ErrorCode.INTERNAL_ERROR, "invitation not stored")
    return member_view(invited)


@router.delete(
    "/rooms/{room_id}/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["members"]
)
async def remove_member(room_id: str, user_id: str, caller: Caller, service: Service) -> Response:
    """Leave (your own id) or remove a member (moderators, over lower roles only)."""
    await service.rooms.remove_member(caller.user_id, room_id, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/rooms/{room_id}/members/{user_id}/role", response_model=MemberOut, tags=["members"])
async def set_role(
    room_id: str, user_id: str, body: SetRoleIn, caller: Caller, service: Service
) -> dict[str, Any]:
    await service.rooms.set_role(caller.user_id, room_id, user_id, body.role)
    updated = await service.store.get_member(room_id, user_id)
    assert updated is not None
    return member_view(updated)


# -- messages in a room ----------------------------------------------------------------
@router.get("/rooms/{room_id}/messages", response_model=MessagePageOut, tags=["messages"])
async def history(
    room_id: str,
    caller: Caller,
    service: Service,
    before: Seq = None,
    after: Seq = None,
    limit: Limit = None,
) -> dict[str, Any]:
    """Messages as they stand now, ascending by `seq`; deletions are tombstones.

    `after=N`: the oldest `limit` after N. `before=N`: the newest `limit` before N.
    Neither: the newest `limit`.
    """
    found = await service.messages.history(
        caller.user_id, room_id, before=before, after=after, limit=limit
    )
    return {"roomId": room_id, "messages": [message_view(m) for m in found]}


@router.post(
    "/rooms/{room_id}/messages",
    response_model=MessageOut,
    tags=["messages"],
    status_code=status.HTTP_201_CREATED,
)
async def send_message(
    room_id: str,
    body: SendMessageIn,
    caller: Caller,
    service: Service,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> dict[str, Any]:
    """Send; 201 once durable. A repeated `Idempotency-Key` returns the original (200)."""
    result = await service.messages.send_message(
        caller.user_id,
        room_id,
        body.content,
        message_type=body.type,
        client_message_id=idempotency_key or body.clientMessageId,
        reply_to=body.replyTo,
        metadata=body.metadata,
    )
    service.presence.message_sent(room_id, caller.user_id)
    if result.duplicate:
        response.status_code = status.HTTP_200_OK
    return message_view(result.message)


@router.get("/rooms/{room_id}/search", response_model=MessagePageOut, tags=["messages"])
async def search(
    room_id: str,
    caller: Caller,
    service: Service,
    q: Annotated[str, Query(min_length=1, max_length=200)],
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> dict[str, Any]:
    """Full-text search of the room's messages, newest first."""
    found = await service.messages.search(caller.user_id, room_id, q, limit)
    return {"roomId": room_id, "messages": [message_view(m) for m in found]}


@router.put("/rooms/{room_id}/read", response_model=ReadOut, tags=["messages"])
async def mark_read(
    room_id: str, body: MarkReadIn, caller: Caller, service: Service
) -> dict[str, Any]:
    seq = await service.messages.mark_read(caller.user_id, room_id, body.seq)
    return {"roomId": room_id, "seq": seq}


@router.get("/rooms/{room_id}/unread", response_model=UnreadOut, tags=["messages"])
async def unread(room_id: str, caller: Caller, service: Service) -> dict[str, Any]:
    count, mentions = await service.messages.unread(caller.user_id, room_id)
    return {"roomId": room_id, "unreadCount": count, "unreadMentions": mentions}


@router.post("/rooms/{room_id}/typing", status_code=status.HTTP_204_NO_CONTENT, tags=["presence"])
async def typing(room_id: str, body: TypingIn, caller: Caller, service: Service) -> Response:
    await service.presence.set_typing(caller.user_id, room_id, body.isTyping)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/rooms/{room_id}/presence", response_model=list[PresenceOut], tags=["presence"])
async def room_presence(room_id: str, caller: Caller, service: Service) -> list[dict[str, Any]]:
    return [presence_view(p) for p in await service.presence.room_presence(caller.user_id, room_id)]


# -- single messages -------------------------------------------------------------------
@router.get("/messages/{message_id}", response_model=MessageOut, tags=["messages"])
async def get_message(message_id: str, caller: Caller, service: Service) -> dict[str, Any]:
    return message_view(await service.messages.get_message(caller.user_id, message_id))


@router.patch("/messages/{message_id}", response_model=MessageOut, tags=["messages"])
async def edit_message(
    message_id: str, body: EditMessageIn, caller: Caller, service: Service
) -> dict[str, Any]:
    """Edit your own message; the previous content goes to its edit history."""
    return message_view(
        await service.messages.edit_message(caller.user_id, message_id, body.content)
    )


@router.delete("/messages/{message_id}", response_model=MessageOut, tags=["messages"])
async def delete_message(message_id: str, caller: Caller, service: Service) -> dict[str, Any]:
    """Delete for everyone (sender, or a room moderator): returns the tombstone."""
    return message_view(await service.messages.delete_message(caller.user_id, message_id))


@router.get("/messages/{message_id}/thread", response_model=MessagePageOut, tags=["messages"])
async def thread(
    message_id: str,
    caller: Caller,
    service: Service,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
) -> dict[str, Any]:
    """Replies to a message (`replyTo` = this id), oldest first."""
    root = await service.messages.get_message(caller.user_id, message_id)
    replies = await service.messages.thread(caller.user_id, message_id, limit)
    return {"roomId": root.room_id, "messages": [message_view(m) for m in replies]}


@router.get("/messages/{message_id}/edits", response_model=list[EditOut], tags=["messages"])
async def edits(message_id: str, caller: Caller, service: Service) -> list[dict[str, Any]]:
    """Earlier versions of the message, oldest first."""
    return [edit_view(e) for e in await service.messages.edit_history(caller.user_id, message_id)]


@router.post("/messages/{message_id}/reactions", response_model=MessageOut, tags=["reactions"])
async def add_reaction(
    message_id: str, body: ReactionIn, caller: Caller, service: Service
) -> dict[str, Any]:
    """React (one reaction per user and emoji; repeating it changes nothing)."""
    return message_view(await service.messages.add_reaction(caller.user_id, message_id, body.emoji))


@router.delete(
    "/messages/{message_id}/reactions/{emoji}", response_model=MessageOut, tags=["reactions"]
)
async def remove_reaction(
    message_id: str, emoji: str, caller: Caller, service: Service
) -> dict[str, Any]:
    return message_view(await service.messages.remove_reaction(caller.user_id, message_id, emoji))


# -- presence ----------------------------------------------------------------------------
@router.put("/presence", response_model=PresenceOut, tags=["presence"])
async def update_presence(body: PresenceIn, caller: Caller, service: Service) -> dict[str, Any]:
    presence = await service.presence.update(caller.user_id, body.status, body.customStatus)
    return presence_view(presence)


@router.get("/presence", response_model=list[PresenceOut], tags=["presence"])
async def get_presence(
    caller: Caller,
    service: Service,
    user_ids: Annotated[str, Query(alias="userIds", max_length=4000)],
) -> list[dict[str, Any]]:
    """Presence of the listed users (comma-separated) who share a room with you."""
    wanted = [u for u in user_ids.split(",") if u][:100]
    return [presence_view(p) for p in await service.presence.get(caller.user_id, wanted)]
