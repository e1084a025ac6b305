"""The first flow a new user tries, end to end over a real node."""

from __future__ import annotations

from tests.conftest import ClientFactory, RestFactory


async def test_room_message_flow(connect: ClientFactory, rest: RestFactory) -> None:
    created = await rest("alice").post("/rooms", json={"type": "public_room", "name": "lobby"})
    assert created.status_code == 201, created.text
    room_id = created.json()["id"]
    alice = await connect("alice")
    bob = await connect("bob")
    await alice.join_room(room_id)
    await bob.join_room(room_id)
    sent = await alice.send_message(room_id, "hello")
    event = await bob.next_event("new_message")
    assert event["data"]["id"] == sent["id"]
    assert event["seq"] == sent["seq"]
    assert event["data"]["content"] == {"text": "hello"}
