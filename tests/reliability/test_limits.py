"""Limits on a real node: WS_MAX_CONNECTIONS (HTTP 503), MAX_ROOMS_PER_CONNECTION
(too_many_rooms), WS_MAX_PAYLOAD (close 1009, others unaffected)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.reliability._support import (
    create_room,
    join_rest,
    recv_json,
    request_raw,
    send_frame,
    token,
)
from tests.reliability.conftest import ServerFactory


async def test_max_connections_refuses_with_503_then_admits_after_a_close(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(WS_MAX_CONNECTIONS=5)
    await server.start()
    async with contextlib.AsyncExitStack() as stack:
        open_ones = []
        for i in range(5):
            ws = await stack.enter_async_context(server.raw(f"user{i}"))
            assert (await recv_json(ws))["type"] == "connected"
            open_ones.append(ws)

        with pytest.raises(InvalidStatus) as refused:
            async with server.raw("sixth"):
                pass
        assert refused.value.response.status_code == 503
        assert b"service_unavailable" in refused.value.response.body
        metrics = await server.metrics()
        assert metrics["chatsphere_connections"] == 5
        assert metrics["chatsphere_connections_refused_total"] >= 1
        # The five are unaffected.
        for ws in open_ones:
            answer = await request_raw(ws, {"type": "ping", "id": 1})
            assert answer["type"] == "ack"

        # One leaves; a new one gets in (once the server has seen the close).
        await open_ones.pop().close()
        async with asyncio.timeout(30):
            while True:
                try:
                    ws = await stack.enter_async_context(server.raw("latecomer"))
                except InvalidStatus as exc:
                    assert exc.response.status_code == 503
                    await asyncio.sleep(0.1)
                    continue
                break
        assert (await recv_json(ws))["type"] == "connected"


async def test_failed_handshakes_do_not_use_up_connection_slots(
    server_factory: ServerFactory,
) -> None:
    """A plain GET /ws (no Upgrade) with a valid token is refused and frees its slot."""
    server = server_factory(WS_MAX_CONNECTIONS=2)
    await server.start()
    async with httpx.AsyncClient(timeout=30) as http:
        for i in range(5):
            response = await http.get(
                f"http://127.0.0.1:{server.ws_port}/ws", params={"token": token(f"probe{i}")}
            )
            assert response.status_code == 426
    async with server.raw("a") as first, server.raw("b") as second:
        assert (await recv_json(first))["type"] == "connected"
        assert (await recv_json(second))["type"] == "connected"


async def test_rooms_per_connection_limit(server_factory: ServerFactory) -> None:
    server = server_factory(MAX_ROOMS_PER_CONNECTION=3)
    await server.start()
    rooms = [await create_room(server, "owner", f"room{i}") for i in range(5)]
    await join_rest(server, "walker", rooms[4])
    async with server.raw("walker") as ws:
        assert (await recv_json(ws))["type"] == "connected"
        for i, room_id in enumerate(rooms[:3]):
            answer = await request_raw(ws, {"type": "join_room", "id": i, "roomId": room_id})
            assert answer["type"] == "ack", answer
        refused = await request_raw(ws, {"type": "join_room", "id": "4th", "roomId": rooms[3]})
        assert refused["type"] == "error"
        assert refused["error"]["code"] == "too_many_rooms"
        # Joining one it already listens to is not a new room.
        again = await request_raw(ws, {"type": "join_room", "id": "again", "roomId": rooms[0]})
        assert again["type"] == "ack", again
        # Resume cannot add rooms past the limit either.
        resumed = await request_raw(
            ws, {"type": "resume", "id": "r", "rooms": {rooms[4]: 0, rooms[1]: 1}}
        )
        assert resumed["type"] == "ack", resumed
        assert resumed["data"]["rooms"][rooms[4]]["error"]["code"] == "too_many_rooms"
        assert "error" not in resumed["data"]["rooms"][rooms[1]]
        # After leaving one, there is room for another.
        left = await request_raw(ws, {"type": "leave_room", "id": "leave", "roomId": rooms[0]})
        assert left["type"] == "ack", left
        answer = await request_raw(ws, {"type": "join_room", "id": "now", "roomId": rooms[3]})
        assert answer["type"] == "ack", answer


async def test_oversized_frame_closes_with_1009_and_others_keep_going(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(WS_MAX_PAYLOAD=4096)
    await server.start()
    room_id = await create_room(server, "owner", "payload")
    for user in ("big", "small"):
        await join_rest(server, user, room_id)
    listener = server.sdk("listener")
    await listener.connect()
    await listener.join_room(room_id)
    try:
        async with server.raw("big") as big, server.raw("small") as small:
            for ws in (big, small):
                assert (await recv_json(ws))["type"] == "connected"
            # Just under the limit is fine…
            ok = await request_raw(
                big,
                {
                    "type": "send_message",
                    "id": "fits",
                    "roomId": room_id,
                    "content": {"text": "x" * 3000},
                },
            )
            assert ok["type"] == "ack", ok
            # …one frame over it closes the connection with 1009.
            await send_frame(
                big,
                {
                    "type": "send_message",
                    "id": "too-big",
                    "roomId": room_id,
                    "content": {"text": "x" * 5000},
                },
            )
            frames: list[dict[str, Any]] = []
            with contextlib.suppress(ConnectionClosed):
                while True:
                    frames.append(await recv_json(big))
            assert big.close_code == 1009, (big.close_code, big.close_reason)
            assert not [f for f in frames if f.get("id") == "too-big"], "oversized frame was run"

            # Everyone else carries on.
            sent = await request_raw(
                small,
                {"type": "send_message", "id": 1, "roomId": room_id, "content": {"text": "hi"}},
            )
            assert sent["type"] == "ack", sent
            got = await listener.next_event(
                "new_message", timeout=30, where=lambda e: e["data"]["senderId"] == "small"
            )
            assert got["seq"] == sent["data"]["seq"]
            assert listener.connections == 1
        async with httpx.AsyncClient(timeout=30) as http:
            health = await http.get(f"{server.http_url}/health")
        assert health.json()["status"] == "ok"
    finally:
        await listener.close()
