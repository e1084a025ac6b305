"""The seed README's two flows, translated to Python, end to end.

"Basic Example": the embeddable facade creates a creator room, a fan joins, a message
is sent and reacted to, and an ``on("new_message")`` callback sees it.
"WebSocket Client Integration": a plain WebSocket client (not the SDK) connects the
seed's way, ``?userId=`` on a dev-mode node, and talks with frames that carry no ids.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from chatsphere.app import ChatSphereService
from chatsphere.domain.messages import MessageType
from chatsphere.domain.rooms import RoomType
from chatsphere.errors import ChatError
from chatsphere.server import Node
from tests.integration.conftest import NodeFactory, NodeRestFactory
from tests.integration.helpers import RawClient, create_room


async def test_basic_example_on_the_embedded_facade(service: ChatSphereService) -> None:
    chat = service
    seen: list[tuple[str, str | None, dict[str, Any]]] = []
    unsubscribe = chat.on("new_message", lambda kind, room, data: seen.append((kind, room, data)))
    everything: list[str] = []
    chat.on("*", lambda kind, room, data: everything.append(kind))

    room = await chat.create_chat_room(
        "creator123",
        "creator_room",
        "Exclusive Fan Chat",
        settings={
            "isPrivate": False,
            "allowVoiceCalls": True,
            "allowVideoCalls": True,
            "contentFiltering": True,
            "maxParticipants": 1000,
        },
    )
    assert room.type is RoomType.CREATOR_ROOM
    assert room.name == "Exclusive Fan Chat"
    assert room.created_by == "creator123"
    assert room.settings.max_participants == 1000
    assert room.settings.is_private is False

    member = await chat.join_chat_room("fan456", room.id)
    assert member.user_id == "fan456"
    assert member.state.value == "joined"

    message = await chat.send_message(
        "fan456", room.id, {"text": "Hello creator! Love your content!"}
    )
    assert message.id
    assert message.seq > 0
    assert message.type is MessageType.TEXT
    assert message.content == {"text": "Hello creator! Love your content!"}

    # The callback fired synchronously with the committed message.
    assert len(seen) == 1
    kind, room_id, data = seen[0]
    assert (kind, room_id) == ("new_message", room.id)
    assert data["id"] == message.id
    assert data["senderId"] == "fan456"
    assert data["chatRoomId"] == room.id
    assert data["content"] == {"text": "Hello creator! Love your content!"}
    assert data["seq"] == message.seq

    await chat.add_reaction("creator123", message.id, "❤️")
    stored = await chat.get_message("creator123", message.id)
    assert [(r.emoji, r.user_ids) for r in stored.reactions] == [("❤️", ("creator123",))]
    assert "reaction_added" in everything

    # A plain string is the seed's shorthand for {"text": ...}.
    second = await chat.send_message("creator123", room.id, "Thanks for joining!")
    assert second.content == {"text": "Thanks for joining!"}
    assert second.seq == message.seq + 2  # the reaction took the seq in between
    assert len(seen) == 2

    unsubscribe()
    await chat.send_message("fan456", room.id, "after unsubscribe")
    assert len(seen) == 2

    history = await chat.get_history("creator123", room.id)
    assert [m.content.get("text") for m in history] == [
        "Hello creator! Love your content!",
        "Thanks for joining!",
        "after unsubscribe",
    ]

    # Same permissions as the network API: an outsider cannot post.
    with pytest.raises(ChatError) as refused:
        await chat.send_message("stranger", room.id, "hi")
    assert refused.value.code.value == "not_a_member"


async def _seed_client(url: str) -> RawClient:
    client = await RawClient.open(url)
    hello = await client.recv()
    assert hello["type"] == "connected", hello
    return client


async def test_websocket_client_integration_the_seed_way(
    start_node: NodeFactory, rest_to: NodeRestFactory
) -> None:
    node = await start_node(auth_mode="dev")
    room = await create_room(rest_to(node, "creator123"), "public_room", "seed room")
    room_id = room["id"]

    # The seed's URL has no path at all; /ws?userId= is accepted too.
    user123 = await _seed_client(f"ws://127.0.0.1:{node.ws_port}?userId=user123")
    user456 = await _seed_client(f"ws://127.0.0.1:{node.ws_port}/ws?userId=user456")
    try:
        for client in (user123, user456):
            await client.send_json({"type": "join_room", "roomId": room_id})
        # No ids: no acks, but each joiner sees its own user_joined.
        joined = await user123.until(lambda f: f["type"] == "user_joined")
        assert joined["data"]["userId"] == "user123"
        assert "id" not in joined
        await user456.until(
            lambda f: f["type"] == "user_joined" and f["data"]["userId"] == "user456"
        )

        await user123.send_json(
            {"type": "send_message", "roomId": room_id, "content": {"text": "Hello everyone!"}}
        )
        for client in (user456, user123):
            event = await client.until(lambda f: f["type"] == "new_message")
            assert event["roomId"] == room_id
            assert isinstance(event["seq"], int)
            data = event["data"]
            assert data["senderId"] == "user123"
            assert data["chatRoomId"] == room_id
            assert data["content"] == {"text": "Hello everyone!"}
            assert data["type"] == "text"
            assert data["seq"] == event["seq"]

        # Nothing was acked because nothing asked: the next frame user123 sees is the pong.
        await user123.send_json({"type": "ping"})
        assert (await user123.recv())["type"] == "pong"
    finally:
        await asyncio.gather(user123.close(), user456.close())


async def test_user_id_query_is_refused_outside_dev_mode(node: Node) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"ws://127.0.0.1:{node.ws_port}/ws?userId=user123", open_timeout=10):
            pass
    assert refused.value.response.status_code == 401
