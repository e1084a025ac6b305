"""Rooms end to end over REST and the WebSocket: types, settings, privacy, membership."""

from __future__ import annotations

import pytest

from chatsphere.domain.rooms import RoomType
from tests.conftest import ClientFactory, RestFactory
from tests.integration.helpers import assert_problem, create_room, expect_error, settle

ALL_TYPES = [t.value for t in RoomType]


@pytest.mark.parametrize("room_type", ALL_TYPES)
async def test_every_room_type_is_created(rest: RestFactory, room_type: str) -> None:
    alice = rest("alice")
    extra = {"participants": ["bob"]} if room_type == "direct_message" else {}
    room = await create_room(alice, room_type, f"a {room_type}", **extra)
    assert room["type"] == room_type
    assert room["createdBy"] == "alice"
    assert room["lastSeq"] >= 1
    fetched = await alice.get(f"/rooms/{room['id']}")
    assert fetched.status_code == 200, fetched.text
    body = fetched.json()
    assert body["id"] == room["id"]
    assert body["type"] == room_type
    expected_role = "member" if room_type == "direct_message" else "owner"
    assert body["membership"]["role"] == expected_role
    assert body["membership"]["state"] == "joined"
    mine = (await alice.get("/rooms")).json()
    assert room["id"] in [r["id"] for r in mine]


async def test_settings_and_metadata_round_trip(rest: RestFactory) -> None:
    alice = rest("alice")
    settings = {
        "isPrivate": True,
        "allowVoiceCalls": False,
        "allowVideoCalls": False,
        "contentFiltering": False,
        "maxParticipants": 42,
        "allowReactions": False,
        "allowThreads": False,
        "readOnly": True,
        "slowModeSeconds": 7,
        "ageRestricted": True,
    }
    metadata = {"topic": "synths", "tags": ["a", "b"], "nested": {"n": 1, "ok": True}}
    room = await create_room(
        alice,
        "creator_room",
        "studio",
        description="a quiet place",
        settings=settings,
        metadata=metadata,
    )
    assert room["settings"] == settings
    assert room["metadata"] == metadata
    assert room["description"] == "a quiet place"
    fetched = (await alice.get(f"/rooms/{room['id']}")).json()
    assert fetched["settings"] == settings
    assert fetched["metadata"] == metadata

    patched = await alice.patch(
        f"/rooms/{room['id']}",
        json={
            "name": "studio 2",
            "description": "louder",
            "settings": {"maxParticipants": 9, "readOnly": False},
            "metadata": {"topic": "drums"},
        },
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["name"] == "studio 2"
    assert body["description"] == "louder"
    assert body["settings"] == {**settings, "maxParticipants": 9, "readOnly": False}
    assert body["metadata"] == {"topic": "drums"}
    again = (await alice.get(f"/rooms/{room['id']}")).json()
    assert again["settings"] == body["settings"]
    assert again["metadata"] == {"topic": "drums"}
    assert again["name"] == "studio 2"

    bad = await alice.post(
        "/rooms", json={"type": "public_room", "name": "x", "settings": {"noSuchThing": True}}
    )
    assert_problem(bad, 422, "invalid_payload")


async def test_patch_is_for_admins_and_owners(rest: RestFactory, connect: ClientFactory) -> None:
    alice, bob, carol = rest("alice"), rest("bob"), rest("carol")
    room = await create_room(alice, "public_room", "lobby")
    room_id = room["id"]
    for client in (bob, carol):
        assert (await client.post(f"/rooms/{room_id}/members", json={})).status_code == 201

    watcher = await connect("carol")
    await watcher.join_room(room_id)

    refused = await bob.patch(f"/rooms/{room_id}", json={"name": "bob's now"})
    assert_problem(refused, 403, "forbidden")
    assert (await alice.get(f"/rooms/{room_id}")).json()["name"] == "lobby"

    promoted = await alice.put(f"/rooms/{room_id}/members/bob/role", json={"role": "admin"})
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["role"] == "admin"
    await watcher.next_event(
        "role_changed", timeout=10, where=lambda e: e["data"]["userId"] == "bob"
    )

    ok = await bob.patch(f"/rooms/{room_id}", json={"name": "renamed by admin"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["name"] == "renamed by admin"
    updated = await watcher.next_event("room_updated", timeout=10)
    assert updated["data"]["room"]["name"] == "renamed by admin"
    assert updated["data"]["changedBy"] == "bob"

    outsider = await rest("dave").patch(f"/rooms/{room_id}", json={"name": "nope"})
    assert_problem(outsider, 403, "not_a_member")
    assert (await alice.get(f"/rooms/{room_id}")).json()["name"] == "renamed by admin"


async def test_public_directory_lists_public_rooms_only(rest: RestFactory) -> None:
    alice, bob = rest("alice"), rest("bob")
    public = await create_room(alice, "public_room", "Jazz lounge")
    creator = await create_room(alice, "creator_room", "Jazz studio")
    other = await create_room(alice, "public_room", "Rock cave")
    private_group = await create_room(alice, "group_chat", "Jazz secret")
    fan_club = await create_room(alice, "fan_club", "Jazz fans")
    hidden = await create_room(alice, "public_room", "Jazz hidden", settings={"isPrivate": True})

    listing = await bob.get("/rooms", params={"public": "true"})
    assert listing.status_code == 200, listing.text
    ids = {r["id"] for r in listing.json()}
    assert {public["id"], creator["id"], other["id"]} <= ids
    assert not ids & {private_group["id"], fan_club["id"], hidden["id"]}
    assert all(r["settings"]["isPrivate"] is False for r in listing.json())

    jazz = await bob.get("/rooms", params={"public": "true", "q": "Jazz"})
    assert jazz.status_code == 200, jazz.text
    assert {r["id"] for r in jazz.json()} == {public["id"], creator["id"]}

    # bob's own list is empty: the directory is not membership.
    assert (await bob.get("/rooms")).json() == []


async def test_my_rooms_carry_unread_counts(rest: RestFactory) -> None:
    alice, bob = rest("alice"), rest("bob")
    room = await create_room(alice, "public_room", "counts")
    room_id = room["id"]
    assert (await bob.post(f"/rooms/{room_id}/members", json={})).status_code == 201
    for text in ("one", "two @bob", "three"):
        sent = await alice.post(f"/rooms/{room_id}/messages", json={"content": {"text": text}})
        assert sent.status_code == 201, sent.text
    mine = {r["id"]: r for r in (await bob.get("/rooms")).json()}
    assert mine[room_id]["unreadCount"] == 3
    assert mine[room_id]["unreadMentions"] == 1
    assert mine[room_id]["membership"]["userId"] == "bob"
    alice_view = {r["id"]: r for r in (await alice.get("/rooms")).json()}
    assert alice_view[room_id]["unreadCount"] == 0  # own messages are never unread
    single = (await bob.get(f"/rooms/{room_id}")).json()
    assert (single["unreadCount"], single["unreadMentions"]) == (3, 1)


async def test_private_room_existence_does_not_leak(
    rest: RestFactory, connect: ClientFactory
) -> None:
    alice = rest("alice")
    room = await create_room(alice, "group_chat", "secret")
    room_id = room["id"]
    mallory = rest("mallory")
    missing = "no-such-room-0000"
    for target in (room_id, missing):
        assert_problem(await mallory.get(f"/rooms/{target}"), 404, "room_not_found")
        assert_problem(await mallory.get(f"/rooms/{target}/messages"), 404, "room_not_found")
        assert_problem(
            await mallory.post(f"/rooms/{target}/messages", json={"content": {"text": "hi"}}),
            404,
            "room_not_found",
        )
        assert_problem(
            await mallory.post(f"/rooms/{target}/members", json={}), 404, "room_not_found"
        )
    ws = await connect("mallory")
    for target in (room_id, missing):
        await expect_error(ws.join_room(target), "room_not_found")
        await expect_error(ws.send_message(target, "hi", retry=False), "room_not_found")
        await expect_error(ws.get_history(target), "room_not_found")
    # The two refusals read the same apart from the id itself.
    real = (await mallory.get(f"/rooms/{room_id}")).json()["error"]["message"]
    fake = (await mallory.get(f"/rooms/{missing}")).json()["error"]["message"]
    assert real.replace(room_id, "ID") == fake.replace(missing, "ID")


async def test_invite_then_join_a_private_room(rest: RestFactory, connect: ClientFactory) -> None:
    alice = rest("alice")
    room = await create_room(alice, "group_chat", "crew")
    room_id = room["id"]
    owner_ws = await connect("alice")
    await owner_ws.join_room(room_id)
    bob_ws = await connect("bob")
    carol_ws = await connect("carol")

    invited = await alice.post(f"/rooms/{room_id}/members", json={"userId": "bob"})
    assert invited.status_code == 201, invited.text
    assert invited.json()["state"] == "invited"
    assert invited.json()["invitedBy"] == "alice"

    invitation = await bob_ws.next_event("room_invitation", timeout=10)
    assert {"roomId": room_id, "invitedBy": "alice"}.items() <= invitation["data"].items()
    event = await owner_ws.next_event("user_invited", timeout=10)
    assert event["roomId"] == room_id
    assert event["data"]["userId"] == "bob"
    assert event["data"]["invitedBy"] == "alice"

    # carol was not invited: not even the invitation reached her, and she cannot join.
    assert [e for e in await settle(carol_ws) if e["type"] == "room_invitation"] == []
    await expect_error(carol_ws.join_room(room_id), "room_not_found")
    assert_problem(
        await rest("carol").post(f"/rooms/{room_id}/members", json={}), 404, "room_not_found"
    )

    # The invitee can see the room before joining, then joins over WS and talks.
    assert (await rest("bob").get(f"/rooms/{room_id}")).status_code == 200
    joined = await bob_ws.join_room(room_id)
    assert joined["membership"]["state"] == "joined"
    await owner_ws.next_event(
        "user_joined", timeout=10, where=lambda e: e["data"]["userId"] == "bob"
    )
    sent = await bob_ws.send_message(room_id, "thanks for the invite")
    got = await owner_ws.next_event("new_message", timeout=10)
    assert got["data"]["id"] == sent["id"]

    # Inviting someone already in the room is a conflict.
    again = await alice.post(f"/rooms/{room_id}/members", json={"userId": "bob"})
    assert_problem(again, 409, "already_member")


async def test_direct_messages_are_one_per_pair(rest: RestFactory) -> None:
    alice, bob = rest("alice"), rest("bob")
    first = await create_room(alice, "direct_message", "", participants=["bob"])
    second = await create_room(alice, "direct_message", "", participants=["bob"])
    reverse = await create_room(bob, "direct_message", "", participants=["alice"])
    assert first["id"] == second["id"] == reverse["id"]
    assert first["settings"]["isPrivate"] is True
    assert first["settings"]["maxParticipants"] == 2
    members = (await bob.get(f"/rooms/{first['id']}/members")).json()
    assert sorted(m["userId"] for m in members) == ["alice", "bob"]
    assert all(m["state"] == "joined" for m in members)

    other = await create_room(alice, "direct_message", "", participants=["carol"])
    assert other["id"] != first["id"]

    for participants in ([], ["bob", "carol"], ["alice"]):
        refused = await alice.post(
            "/rooms", json={"type": "direct_message", "participants": participants}
        )
        assert_problem(refused, 422, "invalid_payload")
    no_list = await alice.post("/rooms", json={"type": "direct_message"})
    assert_problem(no_list, 422, "invalid_payload")

    # Nobody else gets into a DM.
    assert_problem(
        await rest("carol").post(f"/rooms/{first['id']}/members", json={}), 404, "room_not_found"
    )
    invite = await alice.post(f"/rooms/{first['id']}/members", json={"userId": "carol"})
    assert_problem(invite, 403, "forbidden")


async def test_leave_tells_the_others_and_stops_delivery(
    rest: RestFactory, connect: ClientFactory
) -> None:
    room = await create_room(rest("alice"), "public_room", "come and go")
    room_id = room["id"]
    alice, bob = await connect("alice"), await connect("bob")
    await alice.join_room(room_id)
    await bob.join_room(room_id)
    await alice.next_event("user_joined", timeout=10, where=lambda e: e["data"]["userId"] == "bob")

    left = await bob.leave_room(room_id)
    assert left == {"roomId": room_id}
    before = await settle(bob)  # bob's own user_joined and, last, his user_left
    assert before[-1]["type"] == "user_left", before
    event = await alice.next_event("user_left", timeout=10)
    assert event["data"]["userId"] == "bob"
    assert event["data"]["reason"] == "left"

    sent = await alice.send_message(room_id, "are you still there?")
    await alice.next_event("new_message", timeout=10, where=lambda e: e["data"]["id"] == sent["id"])
    after = await settle(bob)
    assert [e for e in after if e.get("roomId") == room_id] == [], after
    await expect_error(bob.send_message(room_id, "hello?", retry=False), "not_a_member")
    # Left over REST too: the room is no longer in bob's list.
    assert room_id not in [r["id"] for r in (await rest("bob").get("/rooms")).json()]


async def test_kick_by_moderator_and_refused_for_members(
    rest: RestFactory, connect: ClientFactory
) -> None:
    owner = rest("alice")
    room = await create_room(owner, "public_room", "moderated")
    room_id = room["id"]
    for user in ("mod", "bob", "carol"):
        assert (await rest(user).post(f"/rooms/{room_id}/members", json={})).status_code == 201
    role = await owner.put(f"/rooms/{room_id}/members/mod/role", json={"role": "moderator"})
    assert role.status_code == 200, role.text
    assert role.json()["role"] == "moderator"
    members = {
        m["userId"]: m["role"] for m in (await owner.get(f"/rooms/{room_id}/members")).json()
    }
    assert members == {"alice": "owner", "mod": "moderator", "bob": "member", "carol": "member"}

    bob_ws, carol_ws = await connect("bob"), await connect("carol")
    await bob_ws.join_room(room_id)
    await carol_ws.join_room(room_id)

    # A member cannot kick, nor promote.
    refused = await rest("carol").delete(f"/rooms/{room_id}/members/bob")
    assert_problem(refused, 403, "forbidden")
    assert_problem(
        await rest("carol").put(f"/rooms/{room_id}/members/bob/role", json={"role": "moderator"}),
        403,
        "forbidden",
    )
    # A moderator cannot kick the owner.
    assert_problem(await rest("mod").delete(f"/rooms/{room_id}/members/alice"), 403, "forbidden")

    kicked = await rest("mod").delete(f"/rooms/{room_id}/members/bob")
    assert kicked.status_code == 204, kicked.text
    own = await bob_ws.next_event("user_left", timeout=10)
    assert {"userId": "bob", "reason": "removed", "removedBy": "mod"}.items() <= own["data"].items()
    seen = await carol_ws.next_event("user_left", timeout=10)
    assert seen["data"]["userId"] == "bob"

    sent = await carol_ws.send_message(room_id, "bye bob")
    await carol_ws.next_event(
        "new_message", timeout=10, where=lambda e: e["data"]["id"] == sent["id"]
    )
    assert [e for e in await settle(bob_ws) if e.get("roomId") == room_id] == []
    await expect_error(bob_ws.send_message(room_id, "let me in", retry=False), "not_a_member")
    members_after = {m["userId"] for m in (await owner.get(f"/rooms/{room_id}/members")).json()}
    assert "bob" not in members_after


async def test_room_full_at_max_participants(rest: RestFactory, connect: ClientFactory) -> None:
    room = await create_room(rest("alice"), "public_room", "tiny", settings={"maxParticipants": 2})
    room_id = room["id"]
    assert (await rest("bob").post(f"/rooms/{room_id}/members", json={})).status_code == 201
    assert_problem(await rest("carol").post(f"/rooms/{room_id}/members", json={}), 409, "room_full")
    dave = await connect("dave")
    await expect_error(dave.join_room(room_id), "room_full")
    # Leaving frees the seat.
    assert (await rest("bob").delete(f"/rooms/{room_id}/members/bob")).status_code == 204
    joined = await dave.join_room(room_id)
    assert joined["membership"]["state"] == "joined"
