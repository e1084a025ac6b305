"""Bad input over the wire and REST: every refusal has a stable code, nothing breaks."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from chatsphere.errors import ErrorCode
from chatsphere.server import Node
from tests.conftest import SECRET, RestFactory, token_for
from tests.integration.conftest import NodeFactory, RawFactory
from tests.integration.helpers import (
    RawClient,
    assert_problem,
    create_room,
    problem_code,
    wait_until,
    ws_url,
)

CODES = {code.value for code in ErrorCode}


def _check_error(frame: dict[str, Any], code: str, frame_id: object = None) -> None:
    assert frame["type"] == "error", frame
    assert frame["error"]["code"] == code, frame
    assert frame["error"]["code"] in CODES
    assert isinstance(frame["error"]["message"], str) and frame["error"]["message"]
    if frame_id is None:
        assert "id" not in frame, frame
    else:
        assert frame["id"] == frame_id, frame


# Text that is not a JSON object, and the code it must get (never with an id).
UNPARSEABLE: list[tuple[str, str]] = [
    ('{"type": "ping"', "invalid_frame"),
    ("not json at all", "invalid_frame"),
    ("", "invalid_frame"),
    ("[1, 2, 3]", "invalid_frame"),
    ('[{"type": "ping", "id": "in-array"}]', "invalid_frame"),
    ('"ping"', "invalid_frame"),
    ("42", "invalid_frame"),
    ("null", "invalid_frame"),
    ('{"type": "ping", "id": "dup", "id": "dup"', "invalid_frame"),
]


def _frames(room_id: str, message_id: str) -> list[tuple[dict[str, Any], str]]:
    """Frames that parse but are refused, each with the code it must get."""
    missing_room = "no-such-room"
    missing_message = "no-such-message"
    return [
        ({"type": "fly_to_the_moon"}, "unknown_type"),
        ({"type": ""}, "unknown_type"),
        ({"type": 17}, "unknown_type"),
        ({"notype": True}, "unknown_type"),
        ({"type": "join_room"}, "invalid_payload"),
        ({"type": "send_message", "content": {"text": "x"}}, "invalid_payload"),
        ({"type": "join_room", "roomId": 123}, "invalid_payload"),
        ({"type": "join_room", "roomId": ""}, "invalid_payload"),
        ({"type": "join_room", "roomId": room_id, "sinceSeq": "3"}, "invalid_payload"),
        ({"type": "join_room", "roomId": room_id, "sinceSeq": -1}, "invalid_payload"),
        ({"type": "send_message", "roomId": room_id, "content": "hi"}, "invalid_payload"),
        ({"type": "send_message", "roomId": room_id, "content": None}, "invalid_payload"),
        (
            {"type": "send_message", "roomId": room_id, "content": {"text": "x"}, "messageType": 5},
            "invalid_payload",
        ),
        (
            {"type": "send_message", "roomId": room_id, "content": {"text": ["x"]}},
            "invalid_payload",
        ),
        ({"type": "typing", "roomId": room_id, "isTyping": "yes"}, "invalid_payload"),
        ({"type": "update_presence", "status": "sleeping"}, "invalid_payload"),
        ({"type": "update_presence", "status": None}, "invalid_payload"),
        ({"type": "add_reaction", "messageId": message_id, "emoji": ""}, "invalid_payload"),
        ({"type": "add_reaction", "messageId": message_id, "emoji": 1}, "invalid_payload"),
        ({"type": "mark_read", "roomId": room_id, "seq": "1"}, "invalid_payload"),
        ({"type": "mark_read", "roomId": room_id, "seq": 1.5}, "invalid_payload"),
        ({"type": "get_history", "roomId": room_id, "limit": 0}, "invalid_payload"),
        ({"type": "get_history", "roomId": room_id, "before": True}, "invalid_payload"),
        ({"type": "resume", "rooms": [room_id]}, "invalid_payload"),
        ({"type": "resume", "rooms": {room_id: "x"}}, "invalid_payload"),
        ({"type": "edit_message", "messageId": message_id, "content": "x"}, "invalid_payload"),
        ({"type": "join_room", "roomId": missing_room}, "room_not_found"),
        ({"type": "leave_room", "roomId": missing_room}, "room_not_found"),
        (
            {"type": "send_message", "roomId": missing_room, "content": {"text": "x"}},
            "room_not_found",
        ),
        ({"type": "typing", "roomId": missing_room}, "room_not_found"),
        ({"type": "mark_read", "roomId": missing_room, "seq": 1}, "room_not_found"),
        ({"type": "get_history", "roomId": missing_room}, "room_not_found"),
        (
            {"type": "edit_message", "messageId": missing_message, "content": {"text": "x"}},
            "message_not_found",
        ),
        ({"type": "delete_message", "messageId": missing_message}, "message_not_found"),
        (
            {"type": "add_reaction", "messageId": missing_message, "emoji": "👍"},
            "message_not_found",
        ),
        (
            {"type": "remove_reaction", "messageId": missing_message, "emoji": "👍"},
            "message_not_found",
        ),
    ]


async def test_bad_frames_get_coded_errors_and_the_connection_survives(
    rest: RestFactory, raw: RawFactory
) -> None:
    room = await create_room(rest("alice"), "public_room", "robust")
    sent = await rest("alice").post(
        f"/rooms/{room['id']}/messages", json={"content": {"text": "target"}}
    )
    message_id = sent.json()["id"]
    ws = await raw("bob")
    joined = await ws.request({"type": "join_room", "roomId": room["id"]})
    assert joined["type"] == "ack"
    await ws.sync()

    for text, code in UNPARSEABLE:
        await ws.ws.send(text)
        reply = await ws.recv()
        _check_error(reply, code)
        assert await ws.sync() == [], text

    await ws.ws.send(b'{"type": "ping", "id": "binary"}')
    _check_error(await ws.recv(), "invalid_frame")
    await ws.ws.send(b"\xff\xfe\x00garbage")
    _check_error(await ws.recv(), "invalid_frame")
    assert await ws.sync() == []

    for index, (frame, code) in enumerate(_frames(room["id"], message_id)):
        # Each refused frame once without an id, once with a string id, once with an int id.
        for frame_id in (None, f"bad-{index}", 1000 + index):
            body = frame if frame_id is None else {**frame, "id": frame_id}
            await ws.send_json(body)
            reply = await ws.recv()
            _check_error(reply, code, frame_id)
            assert await ws.sync() == [], (body, reply)

    # Still a working member of the room.
    ok = await ws.request({"type": "send_message", "roomId": room["id"], "content": {"text": "ok"}})
    assert ok["type"] == "ack"
    assert ok["data"]["content"] == {"text": "ok"}


async def test_oversized_frame_closes_with_1009(start_node: NodeFactory) -> None:
    node = await start_node(ws_max_payload=4096)
    client = await RawClient.open(ws_url(node, token_for(node, "alice")))
    try:
        assert (await client.recv())["type"] == "connected"
        fits = {"type": "ping", "id": "fits", "pad": "x" * 3900}
        await client.send_json(fits)
        assert (await client.until(lambda f: f.get("id") == "fits"))["type"] == "ack"
        await client.send_json({"type": "ping", "id": "huge", "pad": "x" * 5000})
        with pytest.raises(ConnectionClosed) as closed:
            await client.until(lambda f: False)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
    finally:
        await client.close()
    # The node is fine: a new connection works.
    again = await RawClient.open(ws_url(node, token_for(node, "alice")))
    try:
        assert (await again.recv())["type"] == "connected"
        assert await again.sync() == []
    finally:
        await again.close()


async def _refused_status(url: str, **kwargs: Any) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, open_timeout=10, **kwargs):
            pass
    status: int = refused.value.response.status_code
    return status


def _expired_token(user: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now - 100, "exp": now - 50}, SECRET, algorithm="HS256")


def _foreign_token(user: str) -> str:
    return jwt.encode(
        {"sub": user, "exp": int(time.time()) + 60}, "another-secret-0123456789abcdefghij", "HS256"
    )


async def test_ws_upgrade_is_refused_without_a_valid_token(node: Node) -> None:
    base = f"ws://127.0.0.1:{node.ws_port}/ws"
    assert await _refused_status(base) == 401
    assert await _refused_status(f"{base}?token=not-a-jwt") == 401
    assert await _refused_status(f"{base}?token={_expired_token('alice')}") == 401
    assert await _refused_status(f"{base}?token={_foreign_token('alice')}") == 401
    assert (
        await _refused_status(base, additional_headers={"Authorization": "Bearer nonsense"}) == 401
    )
    assert await _refused_status(f"ws://127.0.0.1:{node.ws_port}/elsewhere") == 404
    # The header form works too.
    async with connect(
        base, additional_headers={"Authorization": f"Bearer {token_for(node, 'alice')}"}
    ) as ws:
        assert '"connected"' in str(await ws.recv())


async def test_ws_max_connections_refuses_with_503(start_node: NodeFactory) -> None:
    node = await start_node(ws_max_connections=3)
    clients = [await RawClient.open(ws_url(node, token_for(node, f"u{i}"))) for i in range(3)]
    try:
        for client in clients:
            assert (await client.recv())["type"] == "connected"
        assert await _refused_status(ws_url(node, token_for(node, "u3"))) == 503
        async with httpx.AsyncClient() as http:
            metrics = await http.get(f"http://127.0.0.1:{node.http_port}/metrics")
        assert "chatsphere_connections_refused_total 1.0" in metrics.text

        await clients.pop().close()

        async def has_room() -> bool:
            return len(node.hub) < 3

        await wait_until(has_room, what="a closed connection to be released")
        late = await RawClient.open(ws_url(node, token_for(node, "u3")))
        clients.append(late)
        assert (await late.recv())["type"] == "connected"
    finally:
        for client in clients:
            await client.close()


async def test_rest_auth_failures_are_401_problems(node: Node, rest: RestFactory) -> None:
    room = await create_room(rest("alice"), "public_room", "auth")
    base = f"http://127.0.0.1:{node.http_port}/api/v1"
    bad_headers: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": f"Bearer {_expired_token('alice')}"},
        {"Authorization": f"Bearer {_foreign_token('alice')}"},
        {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
        {"Authorization": "Bearer"},
    ]
    requests: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "/rooms", None),
        ("POST", "/rooms", {"type": "public_room", "name": "x"}),
        ("GET", f"/rooms/{room['id']}", None),
        ("POST", f"/rooms/{room['id']}/messages", {"content": {"text": "x"}}),
        ("PUT", "/presence", {"status": "online"}),
    ]
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        for headers in bad_headers:
            for method, path, body in requests:
                response = await http.request(method, path, json=body, headers=headers)
                assert_problem(response, 401, "unauthorized")
                assert response.headers.get("www-authenticate") == "Bearer"
        expired = await http.get("/rooms", headers=bad_headers[2])
        assert "expired" in expired.json()["error"]["message"]
    # Nothing was created by the refused calls.
    assert (await rest("alice").get(f"/rooms/{room['id']}/messages")).json()["messages"] == []


async def test_rest_validation_and_not_found_problems(rest: RestFactory) -> None:
    alice = rest("alice")
    room = await create_room(alice, "public_room", "valid")
    room_id = room["id"]
    sent = (await alice.post(f"/rooms/{room_id}/messages", json={"content": {"text": "x"}})).json()
    unprocessable: list[tuple[str, str, Any]] = [
        ("POST", "/rooms", {"type": "public_room", "name": 123}),
        ("POST", "/rooms", {"type": "no_such_type", "name": "x"}),
        ("POST", "/rooms", {"type": "public_room", "name": "x", "unknown": 1}),
        ("POST", "/rooms", {"type": "public_room", "name": "x", "settings": {"isPrivate": "no"}}),
        ("POST", "/rooms", {"type": "public_room", "name": ""}),
        ("POST", "/rooms", {"type": "public_room"}),
        ("POST", "/rooms", [1, 2]),
        ("PATCH", f"/rooms/{room_id}", {"name": 5}),
        ("PATCH", f"/rooms/{room_id}", {"colour": "red"}),
        ("POST", f"/rooms/{room_id}/members", {"userId": 5}),
        ("POST", f"/rooms/{room_id}/messages", {"content": "text"}),
        ("POST", f"/rooms/{room_id}/messages", {"content": {"text": "x"}, "extra": 1}),
        ("POST", f"/rooms/{room_id}/messages", {"text": "x"}),
        ("POST", f"/rooms/{room_id}/messages", {"content": {"text": "x"}, "type": "fax"}),
        ("PUT", f"/rooms/{room_id}/read", {"seq": "1"}),
        ("PUT", f"/rooms/{room_id}/read", {"seq": -1}),
        ("PATCH", f"/messages/{sent['id']}", {"content": {"text": 1}}),
        ("PATCH", f"/messages/{sent['id']}", {"content": {"text": "x"}, "senderId": "bob"}),
        ("POST", f"/messages/{sent['id']}/reactions", {"emoji": ""}),
        ("POST", f"/messages/{sent['id']}/reactions", {"emoji": "👍", "userId": "bob"}),
        ("PUT", "/presence", {"status": "sleeping"}),
        ("PUT", "/presence", {"status": "online", "mood": "great"}),
        ("GET", f"/rooms/{room_id}/messages?limit=abc", None),
        ("GET", f"/rooms/{room_id}/messages?before=-5", None),
        ("GET", "/rooms?limit=0", None),
    ]
    for method, path, body in unprocessable:
        response = await alice.request(method, path, json=body)
        assert response.status_code == 422, (method, path, body, response.text)
        assert_problem(response, 422, "invalid_payload")
        assert response.json()["error"]["message"]

    malformed = await alice.post(
        "/rooms", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_problem(malformed, 422, "invalid_payload")

    # Free-form JSON the WebSocket codec would refuse is refused over REST too, not a 500:
    # integers beyond 64 bits, lone surrogates, NaN/Infinity, nesting deeper than storable.
    big = b"105783347211707733979309881163776"
    deep = b"[" * 300 + b"]" * 300
    unstorable: list[tuple[str, str, bytes]] = [
        ("POST", "/rooms", b'{"type":"public_room","name":"x","metadata":{"n":' + big + b"}}"),
        ("PATCH", f"/rooms/{room_id}", b'{"metadata":{"n":' + big + b"}}"),
        ("POST", f"/rooms/{room_id}/messages", b'{"content":{"text":"x","n":' + big + b"}}"),
        (
            "POST",
            f"/rooms/{room_id}/messages",
            b'{"content":{"text":"x"},"metadata":[' + big + b"]}",
        ),
        ("POST", f"/rooms/{room_id}/messages", b'{"content":{"text":"x \\ud800"}}'),
        (
            "POST",
            f"/rooms/{room_id}/messages",
            b'{"content":{"text":"x"},"metadata":{"k":"\\udfff"}}',
        ),
        ("POST", f"/rooms/{room_id}/messages", b'{"type":"tip","content":{"amount":Infinity}}'),
        ("POST", f"/rooms/{room_id}/messages", b'{"content":{"text":"x","f":NaN}}'),
        ("POST", f"/rooms/{room_id}/messages", b'{"content":{"text":"x","d":' + deep + b"}}"),
        ("PATCH", f"/messages/{sent['id']}", b'{"content":{"text":"x","n":' + big + b"}}"),
    ]
    for method, path, raw_body in unstorable:
        response = await alice.request(
            method, path, content=raw_body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, (method, path, raw_body, response.text)
        assert_problem(response, 422, "invalid_payload")
    very_deep = b'{"content":{"text":"x","d":' + b"[" * 5000 + b"]" * 5000 + b"}}"
    response = await alice.post(
        f"/rooms/{room_id}/messages",
        content=very_deep,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code in (400, 422), response.text
    assert problem_code(response) == "invalid_payload"

    # A method a path does not have: 405, and Allow names every method it does have.
    for method, path, allowed in [
        ("PUT", "/rooms", {"GET", "POST"}),
        ("DELETE", f"/rooms/{room_id}", {"GET", "PATCH"}),
        ("PUT", f"/rooms/{room_id}/messages", {"GET", "POST"}),
        ("POST", f"/messages/{sent['id']}", {"GET", "PATCH", "DELETE"}),
        ("DELETE", "/presence", {"GET", "PUT"}),
    ]:
        response = await alice.request(method, path)
        assert response.status_code == 405, (method, path, response.text)
        assert problem_code(response) in CODES
        listed = {m.strip() for m in response.headers["allow"].split(",")}
        assert allowed <= listed <= allowed | {"HEAD"}, (method, path, listed)

    not_found: list[tuple[str, str, Any, str]] = [
        ("GET", "/rooms/nope", None, "room_not_found"),
        ("PATCH", "/rooms/nope", {"name": "x"}, "room_not_found"),
        ("GET", "/rooms/nope/messages", None, "room_not_found"),
        ("POST", "/rooms/nope/messages", {"content": {"text": "x"}}, "room_not_found"),
        ("POST", "/rooms/nope/members", {}, "room_not_found"),
        ("DELETE", "/rooms/nope/members/alice", None, "room_not_found"),
        ("GET", "/messages/nope", None, "message_not_found"),
        ("PATCH", "/messages/nope", {"content": {"text": "x"}}, "message_not_found"),
        ("DELETE", "/messages/nope", None, "message_not_found"),
        ("GET", "/messages/nope/thread", None, "message_not_found"),
        ("GET", "/messages/nope/edits", None, "message_not_found"),
        ("POST", "/messages/nope/reactions", {"emoji": "👍"}, "message_not_found"),
        ("DELETE", "/messages/nope/reactions/👍", None, "message_not_found"),
        ("GET", "/no/such/path", None, "not_found"),
    ]
    for method, path, body, code in not_found:
        response = await alice.request(method, path, json=body)
        assert_problem(response, 404, code)

    # The room and message are as they were.
    assert (await alice.get(f"/rooms/{room_id}")).json()["name"] == "valid"
    assert (await alice.get(f"/messages/{sent['id']}")).json()["content"] == {"text": "x"}
