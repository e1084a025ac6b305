"""Presence and typing end to end: tabs, statuses, timeouts, privacy."""

from __future__ import annotations

from collections import Counter

import httpx

from chatsphere.client import ChatClient, Event
from chatsphere.server import Node
from tests.conftest import ClientFactory, RestFactory, token_for
from tests.integration.conftest import NodeClientFactory, NodeFactory, NodeRestFactory
from tests.integration.helpers import (
    RawClient,
    assert_problem,
    create_room,
    expect_error,
    settle,
    wait_until,
    ws_url,
)


def _typing(events: list[Event]) -> list[Event]:
    return [e for e in events if e["type"].startswith("typing_")]


async def _has_connections(node: Node, user: str, count: int) -> bool:
    (presence,) = await node.service.presence_store.get([user])
    return presence.connections == count


async def _sessions_running(node: Node, running: int) -> bool:
    """A session finishes its clean-up (presence announced) before it stops counting."""
    return len(node.sessions) == running


async def test_two_tabs_keep_a_user_online_until_both_close(
    node: Node, rest: RestFactory, connect: ClientFactory
) -> None:
    room = await create_room(rest("alice"), "public_room", "tabs")
    room_id = room["id"]
    bob = await connect("bob")
    await bob.join_room(room_id)

    tab1 = await connect("alice")
    online = await bob.next_event(
        "presence_updated", timeout=10, where=lambda e: e["data"]["userId"] == "alice"
    )
    assert online["roomId"] == room_id
    assert online["data"]["status"] == "online"
    tab2 = await connect("alice")
    await wait_until(lambda: _has_connections(node, "alice", 2), what="second tab registered")

    await tab1.close()
    await wait_until(lambda: _has_connections(node, "alice", 1), what="first tab gone")
    await wait_until(lambda: _sessions_running(node, 2), what="first tab's handler finished")
    leftover = [e for e in await settle(bob) if e["type"] == "presence_updated"]
    assert all(e["data"]["status"] != "offline" for e in leftover), leftover
    seen = await rest("bob").get("/presence", params={"userIds": "alice"})
    assert seen.status_code == 200, seen.text
    assert [(p["userId"], p["status"]) for p in seen.json()] == [("alice", "online")]
    assert (await tab2.ping()) is None  # the other tab is untouched

    await tab2.close()
    offline = await bob.next_event(
        "presence_updated", timeout=10, where=lambda e: e["data"]["userId"] == "alice"
    )
    assert offline["data"]["status"] == "offline"
    assert isinstance(offline["data"]["lastSeen"], str) and offline["data"]["lastSeen"]
    after = (await rest("bob").get("/presence", params={"userIds": "alice"})).json()
    assert after[0]["status"] == "offline"
    assert after[0]["lastSeen"] is not None


async def test_busy_with_custom_status_reaches_roommates(
    rest: RestFactory, connect: ClientFactory
) -> None:
    room = await create_room(rest("alice"), "group_chat", "status", participants=["bob"])
    alice, bob = await connect("alice"), await connect("bob")
    await bob.join_room(room["id"])
    await alice.join_room(room["id"])
    await settle(bob)

    mine = await alice.update_presence("busy", "recording, back at 5")
    assert mine["status"] == "busy"
    assert mine["customStatus"] == "recording, back at 5"
    event = await bob.next_event(
        "presence_updated", timeout=10, where=lambda e: e["data"]["userId"] == "alice"
    )
    assert event["roomId"] == room["id"]
    assert event["data"]["status"] == "busy"
    assert event["data"]["customStatus"] == "recording, back at 5"
    listed = (await rest("bob").get("/presence", params={"userIds": "alice"})).json()
    assert (listed[0]["status"], listed[0]["customStatus"]) == ("busy", "recording, back at 5")

    await expect_error(alice.update_presence("away", "x" * 141), "invalid_payload")
    await expect_error(alice.update_presence("sleeping"), "invalid_payload")
    assert_problem(
        await rest("alice").put("/presence", json={"status": "away", "customStatus": "y" * 141}),
        422,
        "invalid_payload",
    )
    # The refusals changed nothing.
    assert [e for e in await settle(bob) if e["type"] == "presence_updated"] == []
    exactly = await alice.update_presence("away", "z" * 140)
    assert exactly["customStatus"] == "z" * 140
    away = await bob.next_event("presence_updated", timeout=10)
    assert away["data"]["status"] == "away"


async def _typing_room(owner: httpx.AsyncClient, clients: list[ChatClient]) -> str:
    room = await create_room(owner, "public_room", "typing")
    for client in clients:
        await client.join_room(room["id"])
    for client in clients:
        await settle(client)
    return str(room["id"])


async def test_typing_reaches_others_never_the_typist_and_times_out(
    rest: RestFactory, connect: ClientFactory
) -> None:
    tab1, tab2, bob = await connect("alice"), await connect("alice"), await connect("bob")
    room_id = await _typing_room(rest("alice"), [tab1, tab2, bob])

    assert await tab1.typing(room_id) is None
    started = await bob.next_event("typing_started", timeout=10)
    assert started == {"type": "typing_started", "roomId": room_id, "data": {"userId": "alice"}}
    # No explicit stop: the fixture's 0.5 s typing timeout ends it.
    stopped = await bob.next_event("typing_stopped", timeout=10)
    assert stopped == {"type": "typing_stopped", "roomId": room_id, "data": {"userId": "alice"}}
    # Neither of alice's tabs heard about her own typing, start or stop.
    assert _typing(await settle(tab1)) == []
    assert _typing(await settle(tab2)) == []

    # bob typing reaches both of alice's tabs.
    await bob.typing(room_id)
    for tab in (tab1, tab2):
        seen = await tab.next_event("typing_started", timeout=10)
        assert seen["data"] == {"userId": "bob"}
    await bob.typing(room_id, False)
    for tab in (tab1, tab2):
        await tab.next_event("typing_stopped", timeout=10)
    assert _typing(await settle(bob)) == []


async def test_typing_stops_explicitly_and_when_a_message_is_sent(
    start_node: NodeFactory, connect_to: NodeClientFactory, rest_to: NodeRestFactory
) -> None:
    # A long timeout, so any typing_stopped here comes from the stop or the send.
    node = await start_node(typing_timeout=60)
    alice, bob = await connect_to(node, "alice"), await connect_to(node, "bob")
    room_id = await _typing_room(rest_to(node, "alice"), [alice, bob])

    await alice.typing(room_id)
    await alice.typing(room_id)  # renewing does not start again
    await bob.next_event("typing_started", timeout=10)
    await alice.typing(room_id, False)
    await bob.next_event("typing_stopped", timeout=10)
    assert _typing(await settle(bob)) == []
    await alice.typing(room_id, False)  # stopping twice says nothing
    assert _typing(await settle(bob)) == []

    await alice.typing(room_id)
    await bob.next_event("typing_started", timeout=10)
    sent = await alice.send_message(room_id, "done typing")
    message = await bob.next_event("new_message", timeout=10)
    assert message["data"]["id"] == sent["id"]
    stopped = await bob.next_event("typing_stopped", timeout=10)
    assert stopped["data"] == {"userId": "alice"}

    # Over REST too.
    typing = await rest_to(node, "alice").post(f"/rooms/{room_id}/typing", json={"isTyping": True})
    assert typing.status_code == 204, typing.text
    await bob.next_event("typing_started", timeout=10)
    sent_rest = await rest_to(node, "alice").post(
        f"/rooms/{room_id}/messages", json={"content": {"text": "sent over REST"}}
    )
    assert sent_rest.status_code == 201
    await bob.next_event("typing_stopped", timeout=10)


async def test_outsiders_get_no_typing_or_presence_of_a_private_room(
    rest: RestFactory, connect: ClientFactory
) -> None:
    room = await create_room(rest("alice"), "group_chat", "private", participants=["bob"])
    room_id = room["id"]
    carol = await connect("carol")
    bob = await connect("bob")
    await bob.join_room(room_id)
    alice = await connect("alice")
    await alice.join_room(room_id)
    await settle(bob)

    await alice.typing(room_id)
    await bob.next_event("typing_started", timeout=10)
    await alice.update_presence("busy", "private business")
    await bob.next_event("presence_updated", timeout=10)
    await alice.typing(room_id, False)
    await bob.next_event("typing_stopped", timeout=10)

    leaked = await settle(carol)
    assert [e for e in leaked if e["type"] in ("typing_started", "typing_stopped")] == []
    assert [e for e in leaked if e["type"] == "presence_updated"] == []
    assert room_id not in str(leaked)

    await expect_error(carol.typing(room_id), "room_not_found")
    assert_problem(
        await rest("carol").post(f"/rooms/{room_id}/typing", json={"isTyping": True}),
        404,
        "room_not_found",
    )
    assert_problem(await rest("carol").get(f"/rooms/{room_id}/presence"), 404, "room_not_found")
    # carol shares no room with alice, so alice's presence is not hers to see.
    assert (await rest("carol").get("/presence", params={"userIds": "alice"})).json() == []
    assert _typing(await settle(bob)) == []


async def test_reconnects_read_the_users_rooms_once(
    node: Node, rest: RestFactory, connect: ClientFactory
) -> None:
    """Connect, disconnect, again: one store read of the room list per user, not four.

    A connect storm is mostly users in no room yet, so the empty list is cached too.
    """
    room = await create_room(rest("alice"), "public_room", "lobby")
    bob = await connect("bob")
    await bob.join_room(room["id"])
    reads: Counter[str] = Counter()
    store = node.service.store
    real = store.user_room_ids

    async def counted(user_id: str) -> list[str]:
        reads[user_id] += 1
        return await real(user_id)

    store.user_room_ids = counted  # type: ignore[method-assign]

    async def session(user: str) -> None:
        client = await RawClient.open(ws_url(node, token_for(node, user)))
        assert (await client.recv())["type"] == "connected"
        await wait_until(lambda: _has_connections(node, user, 1), what=f"{user} online")
        await client.close()
        await wait_until(lambda: _sessions_running(node, 1), what=f"{user}'s handler finished")

    for user in ("alice", "fan", "alice", "fan"):
        await session(user)
    assert reads == Counter({"alice": 1, "fan": 1})
    heard = [
        (e["data"]["userId"], e["data"]["status"], e["roomId"])
        for e in await settle(bob)
        if e["type"] == "presence_updated"
    ]
    assert heard == [("alice", s, room["id"]) for s in ("online", "offline") * 2]


async def test_a_room_created_while_connected_gets_its_creators_presence(
    rest: RestFactory, connect: ClientFactory
) -> None:
    # Alice connects first: her (empty) room list is read and cached on connect.
    alice = await connect("alice")
    dm = await create_room(rest("alice"), "direct_message", None, participants=["bob"])
    bob = await connect("bob")
    await bob.join_room(dm["id"])
    await alice.update_presence("busy")
    seen = await bob.next_event(
        "presence_updated", timeout=10, where=lambda e: e["data"]["userId"] == "alice"
    )
    assert seen["roomId"] == dm["id"]
    assert seen["data"]["status"] == "busy"
