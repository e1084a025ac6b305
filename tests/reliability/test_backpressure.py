"""Slow consumers: a bounded send queue closes them with 4000; the room does not wait.

The node runs with the smallest SEND_QUEUE_BYTES (65,536). Two raw websockets
clients in the room stop reading (their transports are paused): "lagging" starts
reading again as soon as the flood is over, "stalled" does not. A flood of ~10 KB
messages large enough to fill the kernel's socket buffers *and* the 64 KB queue
(Linux loopback buffers several MB per socket before the queue sees a byte) goes
to the room, which three SDK readers also listen to.

Expected: lagging reads what was queued and then a close frame with 4000; stalled
is released by the node even though it never reads again (the closing handshake is
bounded); the readers get every message in order; and both slow clients reconnect,
resume from the last seq they saw, and get exactly what they missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from chatsphere.client import ChatClient, ClientError, Event
from tests.reliability._support import (
    RecordingClient,
    ServerProcess,
    all_history,
    create_room,
    duplicates,
    join_rest,
    recv_json,
    request_raw,
    wait_until,
)
from tests.reliability.conftest import ServerFactory

QUEUE = 65_536
TEXT = "z" * 9_900


def _sysctl(name: str, field: int, default: int) -> int:
    try:
        return int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[field])
    except (OSError, ValueError, IndexError):
        return default


def flood_messages() -> int:
    """Enough ~10 KB messages to overflow the kernel's buffers and then the queue."""
    kernel = _sysctl("tcp_wmem", 2, 4 * 1024 * 1024) + _sysctl("tcp_rmem", 1, 131_072)
    return math.ceil((kernel + QUEUE + 1024 * 1024) / len(TEXT))


async def _slow_member(
    server: ServerProcess, user: str, room_id: str, listener: str
) -> tuple[Any, ClientConnection, int]:
    """A raw connection that joined the room: (its context, it, the last seq it saw)."""
    context = server.raw(user, listener, max_size=None)
    ws: ClientConnection = await context.__aenter__()
    assert (await recv_json(ws))["type"] == "connected"
    answer = await request_raw(ws, {"type": "join_room", "id": "j", "roomId": room_id})
    assert answer["type"] == "ack", answer
    return context, ws, int(answer["data"]["lastSeq"])


def _reached(client: ChatClient, room_id: str, seq: int) -> Callable[[], bool]:
    return lambda: client.last_seq.get(room_id, 0) >= seq


async def _read_until_closed(ws: ClientConnection, room_id: str) -> list[int]:
    seqs: list[int] = []
    with contextlib.suppress(ConnectionClosed):
        while True:
            msg = await recv_json(ws, timeout=60)
            if msg.get("roomId") == room_id and isinstance(msg.get("seq"), int):
                seqs.append(msg["seq"])
    return seqs


@pytest.mark.parametrize(
    "listener",
    [
        "ws",
        pytest.param(
            "http",
            marks=pytest.mark.xfail(
                strict=True,
                reason="ASGI /ws cannot cut off a peer that stopped reading: uvicorn's send() "
                "waits for the socket to drain before any message, close included, and "
                "closes the transport gracefully (see docs/reliability.md)",
            ),
        ),
    ],
)
async def test_slow_consumer_is_closed_with_4000_and_the_room_is_unaffected(
    server_factory: ServerFactory, listener: str
) -> None:
    server = server_factory(SEND_QUEUE_BYTES=QUEUE)
    await server.start()
    room_id = await create_room(server, "owner", "firehose")
    readers = [server.sdk(f"reader{i}") for i in range(3)]
    senders = [server.sdk(f"sender{i}") for i in range(4)]
    clients = [*readers, *senders]
    for client in clients:
        await client.connect()
        await client.join_room(room_id)
    for user in ("lagging", "stalled"):
        await join_rest(server, user, room_id)
    lagging_ctx, lagging, lagging_seen = await _slow_member(server, "lagging", room_id, listener)
    stalled_ctx, stalled, stalled_seen = await _slow_member(server, "stalled", room_id, listener)
    try:
        assert (await server.metrics())["chatsphere_connections"] == len(clients) + 2
        start_seq = (await senders[0].send_message(room_id, "before the flood"))["seq"]
        lagging.transport.pause_reading()
        stalled.transport.pause_reading()

        total = flood_messages()

        async def flood(client: Any, count: int) -> None:
            for _ in range(count):
                await client.send_message(room_id, TEXT)

        share = math.ceil(total / len(senders))
        await asyncio.wait_for(asyncio.gather(*(flood(s, share) for s in senders)), 90)
        final = start_seq + share * len(senders)

        # Lagging catches up on what was queued before it was cut off, then sees 4000.
        lagging.transport.resume_reading()
        got = await _read_until_closed(lagging, room_id)
        assert lagging.close_code == 4000, (lagging.close_code, lagging.close_reason)
        assert "slow consumer" in (lagging.close_reason or "")
        assert got == list(range(lagging_seen + 1, lagging_seen + 1 + len(got)))
        lagging_last = got[-1]
        assert lagging_last < final, "the slow consumer was never cut off"

        # Stalled never reads again: the node lets it go anyway (bounded close handshake).
        async with asyncio.timeout(30):  # the close handshake is given 5 s
            while (await server.metrics())["chatsphere_connections"] != len(clients):
                await asyncio.sleep(0.2)

        # Everyone else got every message, in order, once.
        for reader in readers:
            assert isinstance(reader, RecordingClient)
            await wait_until(_reached(reader, room_id, final), 60, "readers to catch up")
            seqs = [e["seq"] for e in reader.seen[room_id] if e["type"] == "new_message"]
            assert seqs[-(final - start_seq + 1) :] == list(range(start_seq, final + 1))
            assert not duplicates(reader.raw_seqs[room_id])
            assert reader.connections == 1, "a reader that kept up was disconnected"

        # Both reconnect and resume from the last seq they saw: exactly what they missed.
        history = {m["seq"]: m["id"] for m in await all_history(server, "owner", room_id)}
        for user, last_seen in (("lagging", lagging_last), ("stalled", stalled_seen)):
            client = server.sdk(user, listener)
            assert isinstance(client, RecordingClient)
            clients.append(client)
            await client.connect()
            client.last_seq[room_id] = last_seen
            # A replay bigger than kernel buffers + queue is itself cut off with 4000;
            # the SDK then reconnects and resumes from where the cut left it.
            with contextlib.suppress(ClientError):
                await client.resume()
            await wait_until(_reached(client, room_id, final), 90, f"{user} to resume")
            events: list[Event] = client.seen[room_id]
            assert [e["seq"] for e in events] == list(range(last_seen + 1, final + 1))
            assert not duplicates(client.raw_seqs[room_id])
            assert all(
                e["data"]["id"] == history[e["seq"]] for e in events if e["type"] == "new_message"
            )
    finally:
        for ws in (lagging, stalled):
            ws.transport.resume_reading()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(_read_until_closed(stalled, room_id), 30)
        for ctx in (lagging_ctx, stalled_ctx):
            with contextlib.suppress(Exception):
                await ctx.__aexit__(None, None, None)
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
