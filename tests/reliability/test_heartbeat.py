"""Heartbeats: jittered server pings; a peer that does not pong is closed with 4001 and
goes offline for its roommates; a peer that pongs stays; the client ``ping`` frame."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
from websockets.exceptions import ConnectionClosed

from tests.reliability._support import (
    create_room,
    join_rest,
    recv_json,
    request_raw,
    send_frame,
    token,
)
from tests.reliability.conftest import ServerFactory
from tests.wire_socket import HandRolledSocket


async def test_missing_pongs_close_with_4001_and_clear_presence(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(HEARTBEAT_INTERVAL=0.5, HEARTBEAT_TIMEOUT=0.5)
    await server.start()
    room_id = await create_room(server, "owner", "heartbeat")
    await join_rest(server, "mute", room_id)
    roommate = server.sdk("roommate")
    steady = server.sdk("steady")
    try:
        for client in (roommate, steady):
            await client.connect()
            await client.join_room(room_id)
        async with server.raw("mute") as mute:
            hello = await recv_json(mute)
            assert hello["data"]["heartbeatInterval"] == 0.5
            await roommate.next_event(
                "presence_updated",
                timeout=30,
                where=lambda e: e["data"]["userId"] == "mute" and e["data"]["status"] == "online",
            )
            # Stop reading: the server's pings sit unread in the socket, no pong goes back.
            mute.transport.pause_reading()
            offline = await roommate.next_event(
                "presence_updated",
                timeout=60,
                where=lambda e: e["data"]["userId"] == "mute",
            )
            assert offline["data"]["status"] == "offline"
            metrics = await server.metrics()
            assert metrics["chatsphere_heartbeat_timeouts_total"] >= 1
            mute.transport.resume_reading()
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await recv_json(mute, timeout=30)
            assert mute.close_code == 4001, (mute.close_code, mute.close_reason)

        async with httpx.AsyncClient(base_url=server.api_url, timeout=30) as http:
            seen = await http.get(
                "/presence",
                params={"userIds": "mute"},
                headers={"Authorization": f"Bearer {token('roommate')}"},
            )
        assert [p["status"] for p in seen.json()] == ["offline"], seen.text

        # The SDK clients answered every ping of the last several seconds and are still here.
        assert roommate.connections == steady.connections == 1
        assert roommate.close_code is None and steady.close_code is None
        assert (await server.metrics())["chatsphere_connections"] == 2
        sent = await steady.send_message(room_id, "still here")
        assert (await roommate.next_event("new_message", timeout=30))["seq"] == sent["seq"]
    finally:
        await asyncio.gather(roommate.close(), steady.close())


async def test_server_pings_are_jittered_and_answered_pings_keep_the_connection(
    server_factory: ServerFactory,
) -> None:
    # A longer interval so the spread of first pings (random in the first interval)
    # is wider than the heartbeat wheel's one-second slots.
    server = server_factory(HEARTBEAT_INTERVAL=4, HEARTBEAT_TIMEOUT=2)
    await server.start()
    sockets = [HandRolledSocket(server.ws_port, token(f"pinged{i}")) for i in range(8)]
    try:
        opened = time.monotonic()
        await asyncio.gather(*(s.open() for s in sockets))
        async with asyncio.timeout(60):
            while not all(len(s.pings) >= 2 for s in sockets):
                await asyncio.sleep(0.1)
        first = sorted(s.pings[0][0] - opened for s in sockets)
        # Opened together, first pinged at different moments: not a thundering herd.
        assert len({int(t) for t in first}) >= 2, f"all first pings in one second: {first}"
        assert all(s.close_code is None for s in sockets)
        metrics = await server.metrics()
        assert metrics["chatsphere_connections"] == len(sockets)
        assert metrics["chatsphere_heartbeat_timeouts_total"] == 0
    finally:
        await asyncio.gather(*(s.close() for s in sockets))


async def test_client_ping_frame_gets_pong(server_factory: ServerFactory) -> None:
    server = server_factory()
    await server.start()
    async with server.raw("pinger") as ws:
        assert (await recv_json(ws))["type"] == "connected"
        before: list[dict[str, object]] = []
        answer = await request_raw(ws, {"type": "ping", "id": 7}, on_event=before.append)
        assert before == [{"type": "pong", "data": None}]
        assert answer == {"type": "ack", "id": 7, "data": None}
        await send_frame(ws, {"type": "ping"})
        assert await recv_json(ws) == {"type": "pong", "data": None}
