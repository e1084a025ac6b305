"""Defects found in review: each test failed before its fix."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from chatsphere.app import ChatSphereService
from chatsphere.domain.rooms import Member
from chatsphere.errors import ChatError, ErrorCode
from chatsphere.server import Node
from tests.conftest import make_settings, token_for
from tests.integration.helpers import RawClient, ws_url


def _nested_json(depth: int) -> str:
    return '{"n":' * depth + '{"leaf":1}' + "}" * depth


async def test_deeply_nested_content_is_invalid_payload_not_internal_error(node: Node) -> None:
    """orjson decodes 1024 levels but encodes only 254: the commit failed with 500."""
    room = await node.service.create_chat_room("alice", "public_room", "r")
    deep = _nested_json(300)
    client = await RawClient.open(ws_url(node, token_for(node, "alice")))
    try:
        assert (await client.recv())["type"] == "connected"
        joined = await client.request({"type": "join_room", "roomId": room.id})
        assert joined["type"] == "ack", joined
        frames = [
            '{"type":"send_message","id":"a","roomId":%s,"content":{"text":"hi","x":%s}}',
            '{"type":"send_message","id":"b","roomId":%s,"content":{"text":"hi"},"metadata":%s}',
        ]
        for index, template in enumerate(frames):
            await client.ws.send(template % (orjson.dumps(room.id).decode(), deep))
            answer = (await client.collect_until_ack("ab"[index]))[-1]
            assert answer["type"] == "error", answer
            assert answer["error"]["code"] == "invalid_payload", answer
        sent = await client.request(
            {"type": "send_message", "roomId": room.id, "content": {"text": "fine"}}
        )
        assert sent["type"] == "ack", sent
        message_id = orjson.dumps(sent["data"]["id"]).decode()
        edit = '{"type":"edit_message","id":"c","messageId":ID,"content":{"text":"e","x":DEEP}}'
        await client.ws.send(edit.replace("ID", message_id).replace("DEEP", deep))
        answer = (await client.collect_until_ack("c"))[-1]
        assert answer["type"] == "error" and answer["error"]["code"] == "invalid_payload", answer
    finally:
        await client.close()


async def test_membership_read_racing_a_removal_is_not_cached(service: ChatSphereService) -> None:
    """A membership read that started before a kick committed must not be cached.

    Otherwise the kicked user keeps sending on the node that committed the removal for
    up to the cache TTL.
    """
    room = await service.create_chat_room("owner", "public_room", "r")
    await service.join_chat_room("mallory", room.id)
    store = service.store
    real_get_member = store.get_member
    stale: Member | None = await real_get_member(room.id, "mallory")
    assert stale is not None
    gate = asyncio.Event()
    reading = asyncio.Event()

    async def slow_get_member(room_id: str, user_id: str) -> Member | None:
        if user_id == "mallory":
            reading.set()
            await gate.wait()  # the read saw the state before the removal committed
            return stale
        return await real_get_member(room_id, user_id)

    store.get_member = slow_get_member  # type: ignore[method-assign]
    service.access.forget_member(room.id, "mallory")
    send = asyncio.create_task(service.send_message("mallory", room.id, "racing the kick"))
    await reading.wait()
    store.get_member = real_get_member  # type: ignore[method-assign]
    await service.remove_member("owner", room.id, "mallory")
    gate.set()
    # Checked before the removal committed, stored after it would be: the store refuses it.
    with pytest.raises(ChatError) as racing:
        await send
    assert racing.value.code is ErrorCode.NOT_A_MEMBER
    try:
        await service.send_message("mallory", room.id, "after the kick")
    except Exception as exc:
        assert getattr(exc, "code", None) is ErrorCode.NOT_A_MEMBER, exc
    else:
        raise AssertionError("a removed user could still send on this node")


async def test_room_cache_is_bounded(service: ChatSphereService) -> None:
    """Unknown room ids from clients (typing, history, …) were cached without bound."""
    access = service.access
    access.max_entries = 50
    for index in range(200):
        try:
            await service.set_typing("alice", f"no-such-room-{index}")
        except Exception as exc:
            assert getattr(exc, "code", None) is ErrorCode.ROOM_NOT_FOUND
    assert len(access._rooms) <= access.max_entries + 1


async def test_resume_of_a_private_room_leaks_no_typing_to_an_outsider(node: Node) -> None:
    """`resume` subscribed before checking membership; ephemeral events are not held
    during a replay, so an outsider got the room's typing while its check was awaited."""
    service = node.service
    room = await service.create_chat_room("owner", "group_chat", "secret")
    owner = await RawClient.open(ws_url(node, token_for(node, "owner")))
    eve = await RawClient.open(ws_url(node, token_for(node, "eve")))
    try:
        await owner.recv()
        await eve.recv()
        assert (await owner.request({"type": "join_room", "roomId": room.id}))["type"] == "ack"
        store = service.store
        real_get_member = store.get_member
        checking = asyncio.Event()
        gate = asyncio.Event()

        async def slow_get_member(room_id: str, user_id: str) -> Member | None:
            if user_id == "eve":
                checking.set()
                await gate.wait()
            return await real_get_member(room_id, user_id)

        store.get_member = slow_get_member  # type: ignore[method-assign]
        service.access.forget_member(room.id, "eve")
        await eve.send_json({"type": "resume", "id": "res", "rooms": {room.id: 0}})
        await asyncio.wait_for(checking.wait(), 5)
        assert (await owner.request({"type": "typing", "roomId": room.id}))["type"] == "ack"
        gate.set()
        seen = await eve.collect_until_ack("res")
        store.get_member = real_get_member  # type: ignore[method-assign]
        seen += await eve.sync()
        leaked = [f for f in seen if f.get("roomId") == room.id and f["type"] != "ack"]
        assert leaked == [], leaked
        result = (
            seen[-1]
            if seen[-1].get("id") == "res"
            else next(f for f in seen if f.get("id") == "res")
        )
        assert result["data"]["rooms"][room.id]["error"]["code"] == "room_not_found"
    finally:
        await owner.close()
        await eve.close()


async def test_join_racing_a_kick_does_not_leave_the_kicked_connection_subscribed(
    node: Node,
) -> None:
    """join_room (no sinceSeq) read the membership, then subscribed without checking
    again: a removal committed in between left the kicked user's connection on the
    room's channel, receiving every later event."""
    service = node.service
    room = await service.create_chat_room("owner", "public_room", "r")
    await service.join_chat_room("mallory", room.id)
    mallory = await RawClient.open(ws_url(node, token_for(node, "mallory")))
    try:
        await mallory.recv()
        store = service.store
        real_get_member = store.get_member
        reading = asyncio.Event()
        gate = asyncio.Event()

        async def slow_get_member(room_id: str, user_id: str) -> Member | None:
            found = await real_get_member(room_id, user_id)
            if user_id == "mallory":
                reading.set()
                await gate.wait()  # the read saw the state before the kick
            return found

        store.get_member = slow_get_member  # type: ignore[method-assign]
        await mallory.send_json({"type": "join_room", "id": "j", "roomId": room.id})
        await asyncio.wait_for(reading.wait(), 5)
        store.get_member = real_get_member  # type: ignore[method-assign]
        await service.remove_member("owner", room.id, "mallory")
        gate.set()
        await mallory.collect_until_ack("j")
        await mallory.sync()
        await service.send_message("owner", room.id, "not for mallory")
        leaked = [f for f in await mallory.sync() if f.get("roomId") == room.id]
        assert leaked == [], leaked
    finally:
        await mallory.close()


async def test_resume_respects_max_rooms_per_connection(tmp_path: Path) -> None:
    """`resume` only capped the rooms of one frame; repeated resumes subscribed a
    connection to any number of rooms past MAX_ROOMS_PER_CONNECTION."""
    node = Node(make_settings(tmp_path, max_rooms_per_connection=2))
    await node.start()
    client = None
    try:
        rooms = []
        for index in range(6):
            room = await node.service.create_chat_room("alice", "public_room", f"r{index}")
            rooms.append(room.id)
        client = await RawClient.open(ws_url(node, token_for(node, "alice")))
        await client.recv()
        for pair in (rooms[0:2], rooms[2:4], rooms[4:6]):
            await client.request({"type": "resume", "rooms": dict.fromkeys(pair, 0)})
        conn = next(iter(node.hub.connections))
        room_channels = [c for c in conn.channels if c.startswith("room:")]
        assert len(room_channels) <= 2, room_channels
    finally:
        if client is not None:
            await client.close()
        await node.stop()


async def test_resume_larger_than_the_send_queue_completes_on_the_asgi_path(
    tmp_path: Path,
) -> None:
    """The replay writes its whole gap synchronously; on /ws of the HTTP port nothing
    drains until it yields, so a gap over SEND_QUEUE_BYTES closes a prompt reader with
    4000, and the same resume after reconnecting fails the same way (a livelock)."""
    node = Node(make_settings(tmp_path, send_queue_bytes=65_536))
    await node.start()
    client = None
    try:
        room = await node.service.create_chat_room("alice", "public_room", "r")
        for _ in range(100):
            await node.service.send_message("alice", room.id, "x" * 2000)
        url = f"ws://127.0.0.1:{node.http_port}/ws?token={token_for(node, 'alice')}"
        client = await RawClient.open(url, max_size=None)
        await client.recv()
        answer = await client.request({"type": "resume", "rooms": {room.id: 0}})
        assert answer["data"]["rooms"][room.id]["replayed"] == 101
    finally:
        if client is not None:
            await client.close()
        await node.stop()
