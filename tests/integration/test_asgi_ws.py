"""``/ws`` on the HTTP port speaks the same protocol as the dedicated listener."""

from __future__ import annotations

from chatsphere.client import ChatClient
from chatsphere.server import Node
from tests.conftest import RestFactory, token_for


async def test_asgi_endpoint_shares_rooms_with_the_dedicated_listener(
    node: Node, rest: RestFactory
) -> None:
    room = (await rest("alice").post("/rooms", json={"type": "public_room", "name": "x"})).json()
    dedicated = ChatClient(f"ws://127.0.0.1:{node.ws_port}/ws", token=token_for(node, "alice"))
    asgi = ChatClient(f"ws://127.0.0.1:{node.http_port}/ws", token=token_for(node, "bob"))
    await dedicated.connect()
    await asgi.connect()
    try:
        await dedicated.join_room(room["id"])
        await asgi.join_room(room["id"])
        sent = await asgi.send_message(room["id"], "over ASGI")
        seen = await dedicated.next_event("new_message", timeout=10)
        assert seen["data"]["id"] == sent["id"]
        reply = await dedicated.send_message(room["id"], "over the listener")
        got = await asgi.next_event(
            "new_message", timeout=10, where=lambda e: e["data"]["id"] == reply["id"]
        )
        assert got["seq"] == reply["seq"]
        bad = await asgi.request("ping")
        assert bad is None
    finally:
        await dedicated.close()
        await asgi.close()


async def test_asgi_endpoint_refuses_missing_token(node: Node) -> None:
    client = ChatClient(f"ws://127.0.0.1:{node.http_port}/ws", reconnect=False)
    try:
        await client.connect()
    except Exception as exc:  # the upgrade is refused with HTTP 401, as on WS_PORT
        assert "401" in str(exc)
    else:
        await client.close()
        raise AssertionError("connected without a token")
