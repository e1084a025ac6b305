"""Sends pipelined on one connection: handed to the store without waiting, answered in order.

A client need not wait for one send's ack before the next: the node hands each send
whose checks its caches answer to the group commit at once, so one connection's sends
share group commits, and every other frame waits until they have committed.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

from chatsphere.config import Settings
from chatsphere.gateway.dispatch import MAX_PENDING_SENDS
from chatsphere.server import Node
from tests.conftest import RestFactory, token_for
from tests.integration.conftest import RawFactory
from tests.integration.helpers import RawClient, create_room

Json = dict[str, Any]


async def joined(rest: RestFactory, raw: RawFactory, user: str) -> tuple[str, RawClient]:
    room = await create_room(rest(user), "public_room", "pipeline")
    client = await raw(user)
    answer = await client.request({"type": "join_room", "roomId": room["id"]})
    assert answer["type"] == "ack", answer
    return room["id"], client


def send(room_id: str, frame_id: str, text: str, **extra: Any) -> Json:
    return {
        "type": "send_message",
        "id": frame_id,
        "roomId": room_id,
        "content": {"text": text},
        **extra,
    }


def answers(frames: list[Json]) -> list[Json]:
    return [f for f in frames if f.get("type") in ("ack", "error")]


async def test_a_burst_of_sends_shares_group_commits_and_is_acked_in_order(
    node: Node, rest: RestFactory, raw: RawFactory
) -> None:
    room_id, alice = await joined(rest, raw, "alice")
    count = 3 * MAX_PENDING_SENDS  # past the cap too: those wait, and still keep the order
    batches_before, items_before, _ = node.service.store.write_stats
    for i in range(count):
        await alice.send_json(send(room_id, f"s{i}", f"burst {i}"))
    # Right behind the sends, unawaited: a read answered after all of them committed.
    await alice.send_json({"type": "get_history", "id": "h", "roomId": room_id, "limit": 200})
    frames = await alice.collect_until_ack("h", timeout=30)
    acks = answers(frames)
    assert [a["id"] for a in acks] == [f"s{i}" for i in range(count)] + ["h"]
    assert all(a["type"] == "ack" for a in acks), [a for a in acks if a["type"] != "ack"]
    seqs = [a["data"]["seq"] for a in acks[:-1]]
    assert seqs == sorted(seqs) and len(set(seqs)) == count
    history = acks[-1]["data"]["messages"]
    assert [m["content"]["text"] for m in history][-count:] == [f"burst {i}" for i in range(count)]
    batches_after, items_after, _ = node.service.store.write_stats
    assert items_after - items_before == count
    # One send at a time would take a group commit each.
    assert batches_after - batches_before <= count // 2


async def test_refused_and_duplicate_sends_in_a_burst_are_answered_before_what_follows(
    rest: RestFactory, raw: RawFactory
) -> None:
    room_id, alice = await joined(rest, raw, "alice")
    first = await alice.request(send(room_id, "", "original", clientMessageId="c-1"))
    assert first["type"] == "ack"
    await alice.send_json(send(room_id, "ok1", "fine"))
    await alice.send_json(send(room_id, "big", "x" * 20_000))  # over MAX_MESSAGE_LENGTH
    await alice.send_json(send(room_id, "dup", "retried", clientMessageId="c-1"))
    await alice.send_json(send(room_id, "ok2", "also fine"))
    await alice.send_json({"type": "ping", "id": "p"})
    answered = answers(await alice.collect_until_ack("p"))
    order = [a["id"] for a in answered]
    # In the order sent, except that the retry is answered after a read: perhaps after
    # the send behind it. The refusal waits for the ack before it.
    assert order[:2] == ["ok1", "big"] and set(order[2:4]) == {"dup", "ok2"}, order
    assert order[4:] == ["p"], order
    got = {a["id"]: a for a in answered}
    assert got["big"]["type"] == "error"
    assert got["big"]["error"]["code"] == "message_too_large"
    assert got["dup"]["type"] == "ack" and got["dup"]["data"]["duplicate"] is True
    assert got["dup"]["data"]["id"] == first["data"]["id"]
    assert got["ok1"]["data"]["seq"] < got["ok2"]["data"]["seq"]
    assert got["ok1"]["data"]["seq"] == first["data"]["seq"] + 1


async def test_a_send_the_store_fails_is_refused_alone_and_can_be_retried(
    settings: Settings, rest: RestFactory, raw: RawFactory
) -> None:
    """A store failure that is not a duplicate (here a trigger that errors, as a full disk
    or a broken constraint would) refuses that send alone: it costs no seq, is not taken
    for a retry of a stored send, and the same clientMessageId is accepted once it works."""
    room_id, alice = await joined(rest, raw, "alice")
    path = settings.database_url.split(":///", 1)[1]
    with sqlite3.connect(path, timeout=10) as db:
        db.execute(
            "CREATE TRIGGER fail_poison BEFORE INSERT ON messages "
            "WHEN NEW.content LIKE '%poison%' "
            "BEGIN SELECT abs(-9223372036854775807 - 1); END"  # integer overflow
        )
    await alice.send_json(send(room_id, "ok1", "fine", clientMessageId="c-ok1"))
    await alice.send_json(send(room_id, "bad", "poison", clientMessageId="c-bad"))
    await alice.send_json(send(room_id, "ok2", "also fine", clientMessageId="c-ok2"))
    await alice.send_json({"type": "ping", "id": "p"})
    answered = answers(await alice.collect_until_ack("p"))
    assert [a["id"] for a in answered] == ["ok1", "bad", "ok2", "p"]
    assert [a["type"] for a in answered] == ["ack", "error", "ack", "ack"]
    assert answered[1]["error"]["code"] == "internal_error"
    assert answered[2]["data"]["seq"] == answered[0]["data"]["seq"] + 1
    with sqlite3.connect(path, timeout=10) as db:
        db.execute("DROP TRIGGER fail_poison")
    retried = await alice.request(send(room_id, "", "poison", clientMessageId="c-bad"))
    assert retried["type"] == "ack", retried
    assert retried["data"].get("duplicate") is not True
    assert retried["data"]["seq"] == answered[2]["data"]["seq"] + 1
    history = await alice.request({"type": "get_history", "roomId": room_id})
    texts = [m["content"]["text"] for m in history["data"]["messages"]]
    assert texts[-3:] == ["fine", "also fine", "poison"]


async def test_a_send_to_a_room_the_caller_left_is_refused_in_a_burst(
    rest: RestFactory, raw: RawFactory
) -> None:
    room_id, _owner = await joined(rest, raw, "alice")
    bob = await raw("bob")
    assert (await bob.request({"type": "join_room", "roomId": room_id}))["type"] == "ack"
    await bob.send_json(send(room_id, "before", "still a member"))
    await bob.send_json({"type": "leave_room", "id": "leave", "roomId": room_id})
    await bob.send_json(send(room_id, "after", "gone"))
    got = answers(await bob.collect_until_ack("after"))
    assert [a["id"] for a in got] == ["before", "leave", "after"]
    assert [a["type"] for a in got] == ["ack", "ack", "error"]
    assert got[2]["error"]["code"] == "not_a_member"


async def test_no_message_of_a_member_removed_mid_stream_is_stored_after_the_removal(
    rest: RestFactory, raw: RawFactory
) -> None:
    """Sends checked against the caches just before a removal reached them may be queued
    behind it; the store refuses them, so the room never shows the removed member
    speaking after the removal."""
    room_id, alice = await joined(rest, raw, "alice")
    bob = await raw("bob")
    assert (await bob.request({"type": "join_room", "roomId": room_id}))["type"] == "ack"
    removed = asyncio.Event()
    sent = 0

    async def stream() -> None:
        nonlocal sent
        while not removed.is_set():
            for _ in range(16):
                sent += 1
                await bob.send_json(send(room_id, f"b{sent}", f"stream {sent}"))
            await asyncio.sleep(0)

    streaming = asyncio.create_task(stream())
    await asyncio.sleep(0.2)
    response = await rest("alice").delete(f"/rooms/{room_id}/members/bob")
    assert response.status_code == 204, response.text
    await asyncio.sleep(0.1)
    removed.set()
    await streaming
    await bob.send_json({"type": "ping", "id": "p"})
    bob_answers = answers(await bob.collect_until_ack("p", timeout=30))
    refusals = [a for a in bob_answers if a["type"] == "error"]
    assert refusals and {a["error"]["code"] for a in refusals} == {"not_a_member"}
    left = await alice.until(lambda frame: frame.get("type") == "user_left")
    removal_seq = left["seq"]
    history = await alice.request(
        {"type": "get_history", "roomId": room_id, "after": removal_seq, "limit": 100}
    )
    assert [m for m in history["data"]["messages"] if m["senderId"] == "bob"] == []


async def test_a_send_the_store_no_longer_takes_is_refused_and_the_connection_carries_on(
    node: Node, rest: RestFactory, raw: RawFactory
) -> None:
    room_id, alice = await joined(rest, raw, "alice")
    assert (await alice.request(send(room_id, "", "before")))["type"] == "ack"
    # As during a shutdown, once the store has stopped taking work.
    await node.service.store._writer.close()
    await alice.send_json(send(room_id, "late", "after"))
    await alice.send_json({"type": "ping", "id": "p"})
    got = answers(await alice.collect_until_ack("p"))
    assert [a["id"] for a in got] == ["late", "p"]
    assert got[0]["type"] == "error", got[0]
    assert got[0]["error"]["code"] == "service_unavailable"
    assert got[1]["type"] == "ack"


async def test_sends_pipeline_on_the_asgi_endpoint_too(node: Node, rest: RestFactory) -> None:
    room = await create_room(rest("alice"), "public_room", "asgi")
    client = await RawClient.open(
        f"ws://127.0.0.1:{node.http_port}/ws?token={token_for(node, 'alice')}"
    )
    try:
        assert (await client.recv())["type"] == "connected"
        assert (await client.request({"type": "join_room", "roomId": room["id"]}))["type"] == "ack"
        count = 40
        batches_before = node.service.store.write_stats[0]
        for i in range(count):
            await client.send_json(send(room["id"], f"s{i}", f"asgi {i}"))
        await client.send_json({"type": "ping", "id": "p"})
        acks = answers(await client.collect_until_ack("p"))
        assert [a["id"] for a in acks] == [f"s{i}" for i in range(count)] + ["p"]
        assert all(a["type"] == "ack" for a in acks)
        assert node.service.store.write_stats[0] - batches_before < count
    finally:
        await client.close()
