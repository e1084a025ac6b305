"""Messages end to end: send, types, limits, edit, delete, reactions, threads, reads, history."""

from __future__ import annotations

from typing import Any

from chatsphere.client import ChatClient
from tests.conftest import ClientFactory, RestFactory
from tests.integration.conftest import NodeClientFactory, NodeFactory, NodeRestFactory, RawFactory
from tests.integration.helpers import assert_problem, create_room, expect_error, settle


async def _room_with(
    rest: RestFactory, connect: ClientFactory, *users: str, room_type: str = "public_room"
) -> tuple[str, list[ChatClient]]:
    """A room owned by the first user; every user joined over WS (owner first)."""
    room = await create_room(rest(users[0]), room_type, "talk")
    clients = []
    for user in users:
        client = await connect(user)
        await client.join_room(room["id"])
        clients.append(client)
    # Everyone has seen everyone join: later queues start clean.
    for client in clients:
        await settle(client)
    return room["id"], clients


def _is(message_id: str) -> Any:
    return lambda e: e["data"].get("id", e["data"].get("messageId")) == message_id


async def test_send_is_acked_with_id_and_seq(rest: RestFactory, connect: ClientFactory) -> None:
    room_id, (alice, bob) = await _room_with(rest, connect, "alice", "bob")
    first = await alice.send_message(room_id, "one")
    second = await alice.send_message(room_id, "two")
    for ack in (first, second):
        assert isinstance(ack["id"], str) and ack["id"]
        assert ack["chatRoomId"] == room_id
        assert ack["senderId"] == "alice"
        assert ack["status"] == "sent"
    assert second["seq"] == first["seq"] + 1
    # The SDK's own client ids sort by creation time, like the server's message ids: to
    # the millisecond (two sends within one may be made in the same millisecond).
    assert len(first["clientMessageId"]) == 26
    assert first["clientMessageId"][:10] <= second["clientMessageId"][:10]
    assert first["clientMessageId"] != second["clientMessageId"]
    for ack in (first, second):
        event = await bob.next_event("new_message", timeout=10)
        assert event["seq"] == ack["seq"]
        assert event["data"] == ack
    stored = await rest("bob").get(f"/messages/{first['id']}")
    assert stored.status_code == 200, stored.text
    assert stored.json()["seq"] == first["seq"]


VALID_CONTENT: list[tuple[str, dict[str, Any]]] = [
    ("text", {"text": "plain words"}),
    ("media", {"url": "https://cdn.example/p.jpg", "text": "caption"}),
    ("media", {"mediaId": "m-123"}),
    ("system", {"text": "alice pinned a message"}),
    ("tip", {"amount": 5, "currency": "EUR", "text": "for you"}),
    ("tip", {"amount": 2.5}),
    ("poll", {"question": "Friday or Saturday?", "options": ["Friday", "Saturday"]}),
    ("voice_note", {"url": "https://cdn.example/v.ogg", "duration": 12.5}),
]

INVALID_CONTENT: list[tuple[str, dict[str, Any]]] = [
    ("text", {}),
    ("text", {"text": "   "}),
    ("text", {"text": 42}),
    ("media", {"text": "no url"}),
    ("media", {"url": 7}),
    ("system", {}),
    ("tip", {"amount": 0}),
    ("tip", {"amount": -3}),
    ("tip", {"amount": True}),
    ("tip", {"amount": 5, "currency": "EURO"}),
    ("poll", {"question": "one option?", "options": ["only"]}),
    ("poll", {"options": ["a", "b"]}),
    ("poll", {"question": "q", "options": ["a", ""]}),
    ("voice_note", {"url": "https://cdn.example/v.ogg"}),
    ("voice_note", {"url": "https://cdn.example/v.ogg", "duration": 0}),
    ("voice_note", {"url": "https://cdn.example/v.ogg", "duration": 4000}),
    ("voice_note", {"duration": 3}),
]


async def test_all_message_types_over_ws_and_rest(
    rest: RestFactory, connect: ClientFactory
) -> None:
    room_id, (alice, bob) = await _room_with(rest, connect, "alice", "bob")
    seen_types = set()
    for kind, content in VALID_CONTENT:
        ack = await alice.send_message(room_id, content, message_type=kind)
        assert ack["type"] == kind
        assert ack["content"] == content
        event = await bob.next_event("new_message", timeout=10)
        assert (event["data"]["id"], event["data"]["type"]) == (ack["id"], kind)
        seen_types.add(kind)
    assert seen_types == {"text", "media", "system", "tip", "poll", "voice_note"}

    for kind, content in VALID_CONTENT:
        if kind == "system":
            continue
        sent = await rest("bob").post(
            f"/rooms/{room_id}/messages", json={"type": kind, "content": content}
        )
        assert sent.status_code == 201, (kind, sent.text)
        assert sent.json()["type"] == kind


async def test_invalid_content_is_refused_per_type(
    rest: RestFactory, connect: ClientFactory
) -> None:
    room_id, (alice,) = await _room_with(rest, connect, "alice")
    for kind, content in INVALID_CONTENT:
        case = f"{kind} {content!r}"
        error = await expect_error(
            alice.send_message(room_id, content, message_type=kind, retry=False),
            "invalid_payload",
        )
        assert error.message, case
        refused = await rest("alice").post(
            f"/rooms/{room_id}/messages", json={"type": kind, "content": content}
        )
        assert refused.status_code == 422, (case, refused.text)
        assert_problem(refused, 422, "invalid_payload")
    history = (await rest("alice").get(f"/rooms/{room_id}/messages")).json()["messages"]
    assert history == []
    # The connection is fine after all those refusals.
    assert (await alice.send_message(room_id, "still here"))["seq"] > 0


async def test_system_messages_need_an_admin(rest: RestFactory, connect: ClientFactory) -> None:
    room_id, (_alice, bob) = await _room_with(rest, connect, "alice", "bob")
    await expect_error(
        bob.send_message(room_id, {"text": "I am the system"}, message_type="system", retry=False),
        "invalid_payload",
    )


async def test_text_over_the_limit_is_too_large(
    start_node: NodeFactory, connect_to: NodeClientFactory, rest_to: NodeRestFactory
) -> None:
    node = await start_node(max_message_length=50)
    room = await create_room(rest_to(node, "alice"), "public_room", "short")
    alice = await connect_to(node, "alice")
    await alice.join_room(room["id"])
    ok = await alice.send_message(room["id"], "x" * 50)
    assert len(ok["content"]["text"]) == 50
    error = await expect_error(
        alice.send_message(room["id"], "x" * 51, retry=False), "message_too_large"
    )
    assert error.details.get("limit") == 50
    refused = await rest_to(node, "alice").post(
        f"/rooms/{room['id']}/messages", json={"content": {"text": "y" * 51}}
    )
    assert_problem(refused, 413, "message_too_large")
    # Edits obey the same limit.
    await expect_error(alice.edit_message(ok["id"], "z" * 51), "message_too_large")


async def test_edit_by_sender_with_history_and_refused_for_others(
    rest: RestFactory, connect: ClientFactory
) -> None:
    room_id, (alice, bob) = await _room_with(rest, connect, "alice", "bob")
    sent = await alice.send_message(room_id, "first draft")
    await bob.next_event("new_message", timeout=10)

    edited = await alice.edit_message(sent["id"], "second draft @bob")
    assert edited["content"] == {"text": "second draft @bob"}
    assert edited["status"] == "edited"
    assert edited["updatedAt"] is not None
    event = await bob.next_event("message_edited", timeout=10)
    assert event["data"]["messageId"] == sent["id"]
    assert event["data"]["content"] == {"text": "second draft @bob"}
    assert event["data"]["editedBy"] == "alice"
    assert event["data"]["mentions"] == ["bob"]
    assert event["seq"] > sent["seq"]

    patched = await rest("alice").patch(
        f"/messages/{sent['id']}", json={"content": {"text": "third draft"}}
    )
    assert patched.status_code == 200, patched.text
    await bob.next_event("message_edited", timeout=10)

    edits = await rest("bob").get(f"/messages/{sent['id']}/edits")
    assert edits.status_code == 200, edits.text
    history = edits.json()
    assert [e["content"] for e in history] == [
        {"text": "first draft"},
        {"text": "second draft @bob"},
    ]
    assert all(e["editedBy"] == "alice" and e["messageId"] == sent["id"] for e in history)
    current = (await rest("bob").get(f"/messages/{sent['id']}")).json()
    assert current["content"] == {"text": "third draft"}

    await expect_error(bob.edit_message(sent["id"], "bob was here"), "forbidden")
    refused = await rest("bob").patch(
        f"/messages/{sent['id']}", json={"content": {"text": "bob again"}}
    )
    assert_problem(refused, 403, "forbidden")
    assert [e for e in await settle(bob) if e["type"] == "message_edited"] == []
    assert (await rest("bob").get(f"/messages/{sent['id']}")).json()["content"] == {
        "text": "third draft"
    }


async def test_delete_by_sender_and_moderator_leaves_tombstones(
    rest: RestFactory, connect: ClientFactory, raw: RawFactory
) -> None:
    room_id, (alice, _mod, bob, carol) = await _room_with(
        rest, connect, "alice", "mod", "bob", "carol"
    )
    promoted = await rest("alice").put(
        f"/rooms/{room_id}/members/mod/role", json={"role": "moderator"}
    )
    assert promoted.status_code == 200, promoted.text
    await carol.next_event("role_changed", timeout=10)

    own = await bob.send_message(room_id, "bob's secret")
    other = await alice.send_message(room_id, "alice's secret")
    keep = await carol.send_message(room_id, "carol's keeper")
    await carol.next_event("new_message", timeout=10, where=_is(keep["id"]))
    await alice.add_reaction(own["id"], "🔥")
    await carol.next_event("reaction_added", timeout=10)

    # A plain member cannot delete someone else's message.
    await expect_error(carol.delete_message(own["id"]), "forbidden")
    assert_problem(await rest("carol").delete(f"/messages/{other['id']}"), 403, "forbidden")

    tomb = await bob.delete_message(own["id"])
    assert tomb["status"] == "deleted"
    assert tomb["content"] == {}
    event = await carol.next_event("message_deleted", timeout=10)
    assert event["data"]["messageId"] == own["id"]
    assert event["data"]["deletedBy"] == "bob"

    by_mod = await rest("mod").delete(f"/messages/{other['id']}")
    assert by_mod.status_code == 200, by_mod.text
    assert by_mod.json()["content"] == {}
    event = await carol.next_event("message_deleted", timeout=10)
    assert (event["data"]["messageId"], event["data"]["deletedBy"]) == (other["id"], "mod")

    history = (await rest("carol").get(f"/rooms/{room_id}/messages")).json()["messages"]
    by_id = {m["id"]: m for m in history}
    for gone in (own, other):
        assert by_id[gone["id"]]["content"] == {}
        assert by_id[gone["id"]]["status"] == "deleted"
        assert by_id[gone["id"]]["reactions"] == []
        assert by_id[gone["id"]]["seq"] == gone["seq"]
    assert by_id[keep["id"]]["content"] == {"text": "carol's keeper"}
    ws_history = await carol.get_history(room_id)
    assert {m["id"]: m["content"] for m in ws_history} == {m["id"]: m["content"] for m in history}

    # A later resume replays the original new_message events without their content.
    replayer = await raw("carol")
    await replayer.send_json({"type": "resume", "id": "res", "rooms": {room_id: 0}})
    frames = await replayer.collect_until_ack("res")
    assert frames[-1]["type"] == "ack", frames[-1]
    replayed = {f["data"]["id"]: f for f in frames if f["type"] == "new_message"}
    for gone in (own, other):
        assert replayed[gone["id"]]["data"]["content"] == {}
        assert replayed[gone["id"]]["data"]["status"] == "deleted"
    assert replayed[keep["id"]]["data"]["content"] == {"text": "carol's keeper"}
    assert "secret" not in str(frames)
    seqs = [f["seq"] for f in frames if "seq" in f]
    assert seqs == sorted(seqs)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))

    # Deleted is final: no edits or reactions afterwards.
    await expect_error(bob.edit_message(own["id"], "undo"), "message_deleted")
    await expect_error(alice.add_reaction(own["id"], "👍"), "message_deleted")


async def test_reactions_add_remove_and_duplicates(
    rest: RestFactory, connect: ClientFactory
) -> None:
    room_id, (alice, bob) = await _room_with(rest, connect, "alice", "bob")
    sent = await alice.send_message(room_id, "react to me")
    await bob.next_event("new_message", timeout=10)

    added = await bob.add_reaction(sent["id"], "👍")
    assert added["reactions"] == [{"emoji": "👍", "userIds": ["bob"], "count": 1}]
    event = await alice.next_event("reaction_added", timeout=10)
    bobs = {"messageId": sent["id"], "emoji": "👍", "userId": "bob"}
    assert bobs.items() <= event["data"].items()
    first_seq = event["seq"]

    again = await bob.add_reaction(sent["id"], "👍")
    assert again["reactions"] == added["reactions"]
    via_rest = await rest("bob").post(f"/messages/{sent['id']}/reactions", json={"emoji": "👍"})
    assert via_rest.status_code == 200, via_rest.text
    assert via_rest.json()["reactions"] == added["reactions"]
    assert [e for e in await settle(alice) if e["type"].startswith("reaction")] == []
    own = [e for e in await settle(bob) if e["type"].startswith("reaction")]
    assert [e["seq"] for e in own] == [first_seq]  # bob saw his own reaction, once

    await alice.add_reaction(sent["id"], "👍")
    both = await bob.next_event("reaction_added", timeout=10)
    assert both["data"]["userId"] == "alice"
    assert both["seq"] == first_seq + 1  # the duplicates took no seq
    stored = (await rest("alice").get(f"/messages/{sent['id']}")).json()
    assert stored["reactions"] == [{"emoji": "👍", "userIds": ["bob", "alice"], "count": 2}]

    removed = await bob.remove_reaction(sent["id"], "👍")
    assert removed["reactions"] == [{"emoji": "👍", "userIds": ["alice"], "count": 1}]
    gone = await alice.next_event("reaction_removed", timeout=10)
    assert bobs.items() <= gone["data"].items()

    # Removing what is not there changes nothing either.
    await bob.remove_reaction(sent["id"], "👍")
    assert [e for e in await settle(alice) if e["type"].startswith("reaction")] == []

    deleted = await rest("alice").delete(f"/messages/{sent['id']}/reactions/👍")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["reactions"] == []
    await bob.next_event("reaction_removed", timeout=10)


async def test_replies_and_threads(rest: RestFactory, connect: ClientFactory) -> None:
    room_id, (alice, bob) = await _room_with(rest, connect, "alice", "bob")
    root = await alice.send_message(room_id, "what should we play?")
    first = await bob.send_message(room_id, "jazz", reply_to=root["id"])
    unrelated = await bob.send_message(room_id, "also, hello")
    second = await alice.send_message(room_id, "jazz it is", reply_to=root["id"])
    assert first["replyTo"] == root["id"]
    event = await alice.next_event("new_message", timeout=10, where=_is(first["id"]))
    assert event["data"]["replyTo"] == root["id"]

    thread = await rest("bob").get(f"/messages/{root['id']}/thread")
    assert thread.status_code == 200, thread.text
    body = thread.json()
    assert body["roomId"] == room_id
    assert [m["id"] for m in body["messages"]] == [first["id"], second["id"]]
    assert unrelated["id"] not in [m["id"] for m in body["messages"]]
    assert (await rest("bob").get(f"/messages/{root['id']}")).json()["replyCount"] == 2

    sent = await rest("bob").post(
        f"/rooms/{room_id}/messages",
        json={"content": {"text": "rest reply"}, "replyTo": root["id"]},
    )
    assert sent.status_code == 201, sent.text
    assert (await rest("alice").get(f"/messages/{root['id']}")).json()["replyCount"] == 3

    await expect_error(
        bob.send_message(room_id, "to nowhere", reply_to="no-such-message", retry=False),
        "message_not_found",
    )


async def test_mentions_and_unread_mentions(rest: RestFactory, connect: ClientFactory) -> None:
    room_id, (alice, bob, _carol) = await _room_with(rest, connect, "alice", "bob", "carol")
    sent = await alice.send_message(room_id, "hey @bob and @carol, and @bob again")
    assert sent["mentions"] == ["bob", "carol"]
    event = await bob.next_event("new_message", timeout=10)
    assert event["data"]["mentions"] == ["bob", "carol"]
    await alice.send_message(room_id, "no mention here")
    await alice.send_message(room_id, "@bob one more")

    unread = await rest("bob").get(f"/rooms/{room_id}/unread")
    assert unread.status_code == 200, unread.text
    assert unread.json() == {"roomId": room_id, "unreadCount": 3, "unreadMentions": 2}
    carol = (await rest("carol").get(f"/rooms/{room_id}/unread")).json()
    assert (carol["unreadCount"], carol["unreadMentions"]) == (3, 1)
    mine = (await rest("alice").get(f"/rooms/{room_id}/unread")).json()
    assert (mine["unreadCount"], mine["unreadMentions"]) == (0, 0)


async def test_mark_read_sends_receipts_and_lowers_unread(
    rest: RestFactory, connect: ClientFactory
) -> None:
    room_id, (alice, bob) = await _room_with(rest, connect, "alice", "bob")
    acks = [await alice.send_message(room_id, f"m{i} @bob") for i in range(4)]
    bob_rest = rest("bob")
    before = (await bob_rest.get(f"/rooms/{room_id}/unread")).json()
    assert (before["unreadCount"], before["unreadMentions"]) == (4, 4)

    read = await bob.mark_read(room_id, acks[1]["seq"])
    assert read == {"roomId": room_id, "seq": acks[1]["seq"]}
    receipt = await alice.next_event("read_receipt", timeout=10)
    assert receipt["roomId"] == room_id
    assert {"userId": "bob", "seq": acks[1]["seq"]}.items() <= receipt["data"].items()
    assert "seq" not in receipt  # ephemeral
    middle = (await bob_rest.get(f"/rooms/{room_id}/unread")).json()
    assert (middle["unreadCount"], middle["unreadMentions"]) == (2, 2)

    put = await bob_rest.put(f"/rooms/{room_id}/read", json={"seq": acks[-1]["seq"]})
    assert put.status_code == 200, put.text
    await alice.next_event("read_receipt", timeout=10)
    after = (await bob_rest.get(f"/rooms/{room_id}/unread")).json()
    assert (after["unreadCount"], after["unreadMentions"]) == (0, 0)
    listed = {r["id"]: r for r in (await bob_rest.get("/rooms")).json()}[room_id]
    assert (listed["unreadCount"], listed["unreadMentions"]) == (0, 0)

    # Reading past the end is clamped to the room's last seq.
    clamped = await bob.mark_read(room_id, 10_000)
    assert clamped["seq"] <= acks[-1]["seq"] + 1


async def test_history_paging_rest_and_ws_agree(rest: RestFactory, connect: ClientFactory) -> None:
    room_id, (alice,) = await _room_with(rest, connect, "alice")
    sent = [await alice.send_message(room_id, f"message {i:02d}") for i in range(30)]
    seqs = [m["seq"] for m in sent]
    client = rest("alice")

    async def both(**params: int) -> list[dict[str, Any]]:
        response = await client.get(f"/rooms/{room_id}/messages", params=params)
        assert response.status_code == 200, response.text
        page: list[dict[str, Any]] = response.json()["messages"]
        over_ws = await alice.get_history(room_id, **params)
        assert over_ws == page
        return page

    newest = await both(limit=10)
    assert [m["seq"] for m in newest] == seqs[-10:]
    older = await both(before=newest[0]["seq"], limit=10)
    assert [m["seq"] for m in older] == seqs[-20:-10]
    oldest = await both(before=older[0]["seq"], limit=10)
    assert [m["seq"] for m in oldest] == seqs[:10]
    assert await both(before=oldest[0]["seq"], limit=10) == []

    forward = await both(after=seqs[4], limit=5)
    assert [m["seq"] for m in forward] == seqs[5:10]
    assert [m["content"]["text"] for m in forward] == [f"message {i:02d}" for i in range(5, 10)]
    tail = await both(after=seqs[-3])
    assert [m["seq"] for m in tail] == seqs[-2:]
    everything = await both(limit=100)
    assert [m["id"] for m in everything] == [m["id"] for m in sent]
    assert len({m["id"] for m in newest + older + oldest}) == 30

    bad = await client.get(f"/rooms/{room_id}/messages", params={"limit": 0})
    assert_problem(bad, 422, "invalid_payload")
    await expect_error(alice.request("get_history", roomId=room_id, limit=-1), "invalid_payload")


async def test_search_over_rest(rest: RestFactory, connect: ClientFactory) -> None:
    room_id, (alice, _bob) = await _room_with(rest, connect, "alice", "bob")
    await alice.send_message(room_id, "banana bread recipe")
    await alice.send_message(room_id, "apple pie")
    third = await alice.send_message(room_id, "more banana please")
    other_room = await create_room(rest("alice"), "public_room", "elsewhere")
    await rest("alice").post(
        f"/rooms/{other_room['id']}/messages", json={"content": {"text": "banana elsewhere"}}
    )

    found = await rest("bob").get(f"/rooms/{room_id}/search", params={"q": "banana"})
    assert found.status_code == 200, found.text
    texts = [m["content"]["text"] for m in found.json()["messages"]]
    assert texts == ["more banana please", "banana bread recipe"]  # newest first
    assert found.json()["messages"][0]["id"] == third["id"]
    none = await rest("bob").get(f"/rooms/{room_id}/search", params={"q": "cherry"})
    assert none.json()["messages"] == []
    assert_problem(
        await rest("bob").get(f"/rooms/{room_id}/search", params={"q": ""}), 422, "invalid_payload"
    )
    assert_problem(
        await rest("zed").get(f"/rooms/{room_id}/search", params={"q": "banana"}),
        403,
        "not_a_member",
    )


async def test_rest_idempotency_key_stores_and_delivers_once(
    rest: RestFactory, connect: ClientFactory
) -> None:
    room_id, (_alice, bob) = await _room_with(rest, connect, "alice", "bob")
    client = rest("alice")
    body = {"content": {"text": "exactly once"}}
    headers = {"Idempotency-Key": "order-7f3a"}
    first = await client.post(f"/rooms/{room_id}/messages", json=body, headers=headers)
    second = await client.post(f"/rooms/{room_id}/messages", json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert second.status_code == 200, second.text
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["seq"] == first.json()["seq"]

    delivered = [e for e in await settle(bob) if e["type"] == "new_message"]
    assert [e["data"]["id"] for e in delivered] == [first.json()["id"]]
    history = (await client.get(f"/rooms/{room_id}/messages")).json()["messages"]
    assert [m["id"] for m in history] == [first.json()["id"]]

    # Another key is another message.
    third = await client.post(
        f"/rooms/{room_id}/messages", json=body, headers={"Idempotency-Key": "order-7f3b"}
    )
    assert third.status_code == 201
    assert third.json()["id"] != first.json()["id"]


async def test_ws_retry_with_same_client_message_id(
    rest: RestFactory, connect: ClientFactory
) -> None:
    room_id, (alice, bob) = await _room_with(rest, connect, "alice", "bob")
    frame = {"roomId": room_id, "content": {"text": "retry me"}, "clientMessageId": "cmid-1"}
    first = await alice.request("send_message", **frame)
    second = await alice.request("send_message", **frame)
    assert "duplicate" not in first
    assert second["duplicate"] is True
    assert second["id"] == first["id"]
    assert second["seq"] == first["seq"]
    assert second["clientMessageId"] == "cmid-1"

    delivered = [e for e in await settle(bob) if e["type"] == "new_message"]
    assert [e["data"]["id"] for e in delivered] == [first["id"]]
    own = [e for e in await settle(alice) if e["type"] == "new_message"]
    assert [e["data"]["id"] for e in own] == [first["id"]]

    # The same clientMessageId from another user is that user's own message.
    theirs = await bob.request("send_message", **frame)
    assert "duplicate" not in theirs
    assert theirs["id"] != first["id"]


async def test_ws_send_ack_carries_the_message_as_delivered(
    rest: RestFactory, connect: ClientFactory
) -> None:
    room_id, (alice, bob) = await _room_with(rest, connect, "alice", "bob")
    ack = await alice.request(
        "send_message", roomId=room_id, content={"text": "hi @bob"}, clientMessageId="c-9"
    )
    delivered = [e for e in await settle(bob) if e["type"] == "new_message"]
    assert [e["data"] for e in delivered] == [ack]
    assert ack["seq"] == delivered[0]["seq"] > 0
    assert ack["mentions"] == ["bob"]
    assert ack["clientMessageId"] == "c-9"
