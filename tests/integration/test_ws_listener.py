"""The picows listener on WS_PORT, in process: what picows leaves to the gateway.

Fragmented messages, the whole-message size cap, UTF-8 across fragments, the closing
handshake from either side, pings from the client, and the HTTP answers of the port.
"""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from chatsphere.server import Node
from tests.conftest import token_for
from tests.integration.conftest import NodeFactory
from tests.integration.helpers import RawClient, wait_until, ws_url

WAIT = 10.0


@pytest.fixture
async def small_node(start_node: NodeFactory) -> Node:
    return await start_node(ws_max_payload=4096)


async def open_raw(node: Node, user: str) -> RawClient:
    client = await RawClient.open(ws_url(node, token_for(node, user)))
    assert (await client.recv())["type"] == "connected"
    return client


async def closed_with(client: RawClient) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(WAIT):
            while True:
                await client.ws.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def test_a_message_sent_in_fragments_is_put_together(small_node: Node) -> None:
    client = await open_raw(small_node, "alice")
    try:
        frame = orjson.dumps({"type": "ping", "id": "in-three-parts"}).decode()
        await client.ws.send([frame[:5], frame[5:12], frame[12:]])
        answer = await client.until(lambda f: f.get("id") == "in-three-parts", WAIT)
        assert answer["type"] == "ack"
        # A whole frame after the fragmented one is read as usual.
        assert (await client.request({"type": "ping"}))["type"] == "ack"
    finally:
        await client.close()


async def test_fragments_adding_up_past_the_payload_cap_close_with_1009(small_node: Node) -> None:
    victim = await open_raw(small_node, "victim")
    neighbour = await open_raw(small_node, "neighbour")
    try:
        # Each fragment is under WS_MAX_PAYLOAD (4096); together they are not.
        await victim.ws.send(["x" * 3000, "x" * 3000])
        assert await closed_with(victim) == 1009
        assert (await neighbour.request({"type": "ping"}))["type"] == "ack"
    finally:
        await asyncio.gather(victim.close(), neighbour.close())


async def test_a_single_frame_past_the_cap_closes_with_1009(small_node: Node) -> None:
    victim = await open_raw(small_node, "victim")
    try:
        await victim.ws.send("x" * 5000)
        assert await closed_with(victim) == 1009
    finally:
        await victim.close()


async def test_invalid_utf8_split_over_fragments_closes_with_1007(small_node: Node) -> None:
    victim = await open_raw(small_node, "victim")
    try:
        # websockets sends str fragments as text, bytes as binary: text with bad bytes
        # needs a raw frame, so the second fragment carries a lone continuation byte.
        await victim.ws.send([b'{"type":"ping",', b'"id":"\x80"}'], text=True)
        assert await closed_with(victim) == 1007
    finally:
        await victim.close()


async def test_a_close_from_the_client_is_answered_and_the_session_ends(
    small_node: Node,
) -> None:
    client = await open_raw(small_node, "leaver")
    assert len(small_node.hub) == 1
    await client.ws.close(1000, "bye")
    assert client.ws.close_code == 1000  # our answer echoed the client's code

    async def gone() -> bool:
        return len(small_node.hub) == 0

    await wait_until(gone, WAIT, "the session to end")


@pytest.mark.parametrize("payload", [b"", (1006).to_bytes(2, "big")], ids=["no-code", "1006"])
async def test_a_close_with_no_code_or_a_local_only_code_is_answered_with_1000(
    small_node: Node, payload: bytes
) -> None:
    # An empty close frame (a browser's plain ws.close()) has no code to echo, and 1006
    # only reports a state locally: neither may be sent back (RFC 6455 §7.4.1), and a
    # strict client fails the connection on it. The frame is written by hand (masked, as
    # a client's must be) because the client library refuses to send 1006.
    client = await open_raw(small_node, "quiet-leaver")
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    client.ws.transport.write(bytes([0x88, 0x80 | len(payload)]) + mask + masked)
    await asyncio.wait_for(client.ws.wait_closed(), WAIT)
    assert client.ws.protocol.close_rcvd is not None
    assert client.ws.protocol.close_rcvd.code == 1000


async def test_a_ping_from_the_client_gets_its_pong(small_node: Node) -> None:
    client = await open_raw(small_node, "pinger")
    try:
        pong = await client.ws.ping(b"are you there")
        await asyncio.wait_for(pong, WAIT)
    finally:
        await client.close()


async def test_the_port_answers_plain_http_with_json(small_node: Node) -> None:
    base = f"http://127.0.0.1:{small_node.ws_port}"
    async with httpx.AsyncClient(timeout=WAIT) as http:
        health = await http.get(f"{base}/health")
        assert health.status_code == 200
        assert health.headers["content-type"] == "application/json"
        assert health.json()["status"] == "ok"
        elsewhere = await http.get(f"{base}/nowhere")
        assert elsewhere.status_code == 404
        assert elsewhere.json()["error"]["code"] == "not_found"
        plain = await http.get(f"{base}/ws", params={"token": token_for(small_node, "x")})
        assert plain.status_code == 426
        assert plain.headers["upgrade"] == "websocket"
        no_token = await http.get(
            f"{base}/ws",
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version": "13",
            },
        )
        assert no_token.status_code == 401
        assert no_token.json()["error"]["code"] == "unauthorized"
