"""``chatsphere demo``: a narrated messaging walkthrough on a temporary node."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import httpx

from .client import ChatClient
from .config import Settings
from .server import Node


def _say(text: str) -> None:
    print(text, flush=True)


async def run_demo(pace: float = 0.4) -> int:
    with tempfile.TemporaryDirectory(prefix="chatsphere-demo-") as tmp:
        settings = Settings(
            environment="development",
            host="127.0.0.1",
            ws_port=0,
            http_port=0,
            database_url=f"sqlite+aiosqlite:///{Path(tmp) / 'demo.db'}",
            typing_timeout=1.0,
        )
        node = Node(settings)
        await node.start()
        try:
            await _walkthrough(node, pace)
        finally:
            await node.stop()
    return 0


async def _walkthrough(node: Node, pace: float) -> None:
    authority = node.service.authority
    ws = f"ws://127.0.0.1:{node.ws_port}/ws"
    http = f"http://127.0.0.1:{node.http_port}/api/v1"
    alice_token, bob_token = authority.mint("alice"), authority.mint("bob")
    _say(f"A ChatSphere node is up: {ws} (WebSocket) and {http} (REST).\n")

    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {alice_token}"}) as rest:
        response = await rest.post(
            f"{http}/rooms", json={"type": "creator_room", "name": "Alice's studio"}
        )
        room = response.json()
    room_id = room["id"]
    _say(f"1. alice creates a creator room over REST: {room['name']!r} ({room_id}).")

    async with ChatClient(ws, token=alice_token) as alice, ChatClient(ws, token=bob_token) as bob:
        await alice.join_room(room_id)
        await bob.join_room(room_id)
        joined = await alice.next_event("user_joined", where=lambda e: e["data"]["userId"] == "bob")
        _say(f"2. bob joins over WebSocket; alice sees user_joined (seq {joined['seq']}).")
        await asyncio.sleep(pace)

        await bob.typing(room_id)
        typing = await alice.next_event("typing_started")
        _say(f"3. bob starts typing; alice sees typing_started from {typing['data']['userId']}.")
        stopped = await alice.next_event("typing_stopped", timeout=5)
        _say(f"   ...and typing_stopped ({stopped['data']['userId']}) after a second of silence.")

        hello = await bob.send_message(room_id, "Hi @alice, love the new set!")
        seen = await alice.next_event("new_message")
        _say(
            f"4. bob sends a message (seq {hello['seq']}), acked once durable; alice receives "
            f"{seen['data']['content']['text']!r}, mentions={seen['data']['mentions']}."
        )
        await asyncio.sleep(pace)

        await alice.add_reaction(hello["id"], "❤️")
        reaction = await bob.next_event("reaction_added")
        _say(f"5. alice reacts {reaction['data']['emoji']} to it; bob sees reaction_added.")

        reply = await alice.send_message(
            room_id, "Thank you! New drop on Friday.", reply_to=hello["id"]
        )
        _say(f"6. alice replies in a thread (replyTo={reply['replyTo'][:8]}…).")

        edited = await alice.edit_message(reply["id"], "Thank you! New drop on Saturday.")
        _say(
            f"7. alice edits her reply: {edited['content']['text']!r} (status {edited['status']})."
        )

        presence = await alice.update_presence("busy", "streaming soon")
        update = await bob.next_event(
            "presence_updated", where=lambda e: e["data"]["userId"] == "alice"
        )
        _say(
            f"8. alice sets presence {presence['status']!r} ({presence['customStatus']}); "
            f"bob sees presence_updated: {update['data']['status']}."
        )

        unread_before = (await bob.mark_read(room_id, 0))["seq"]
        await bob.mark_read(room_id, reply["seq"])
        _say(
            f"9. bob marks the room read up to seq {reply['seq']} (was {unread_before}); "
            "alice receives a read_receipt."
        )

        await bob.drop()
        await alice.send_message(room_id, "Bob, you dropped - this one waits for you.")
        missed = await bob.next_event("new_message", timeout=15)
        _say(
            f"10. bob's connection drops; alice keeps talking; bob reconnects, resumes and gets "
            f"{missed['data']['content']['text']!r} (seq {missed['seq']})."
        )

        history = await bob.get_history(room_id, limit=10)
        _say(
            f"11. history has {len(history)} messages, newest seq {history[-1]['seq']}, "
            "edits applied."
        )
        await bob.delete_message(hello["id"])
        gone = await alice.next_event("message_deleted")
        _say(
            f"12. bob deletes his first message; everyone gets message_deleted "
            f"({gone['data']['messageId'][:8]}…), and its content is gone from history."
        )
    _say("\nDone. Run `make run` to start a node of your own.")
