"""protocol/codec.py: every client frame decodes or is refused with a stable code."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
import pytest

if TYPE_CHECKING:
    from chatsphere.app import ChatSphereService

from chatsphere.domain.messages import MessageType
from chatsphere.domain.presence import PresenceStatus
from chatsphere.errors import ChatError, ErrorCode
from chatsphere.protocol import frames as f
from chatsphere.protocol.codec import (
    FrameError,
    ack_frame,
    decode_frame,
    ephemeral_frame,
    error_frame,
    event_data,
    room_event_frame,
    server_frame,
)


def encode(frame: dict[str, Any]) -> str:
    return orjson.dumps(frame).decode()


def refused(raw: str | bytes) -> FrameError:
    with pytest.raises(FrameError) as info:
        decode_frame(raw)
    return info.value


# -- valid frames ----------------------------------------------------------------------

VALID: list[tuple[dict[str, Any], type[f.Frame]]] = [
    ({"type": "join_room", "roomId": "r1"}, f.JoinRoom),
    ({"type": "join_room", "roomId": "r1", "sinceSeq": 7}, f.JoinRoom),
    ({"type": "leave_room", "roomId": "r1"}, f.LeaveRoom),
    ({"type": "send_message", "roomId": "r1", "content": {"text": "hi"}}, f.SendMessage),
    (
        {
            "type": "send_message",
            "roomId": "r1",
            "content": {"amount": 5},
            "messageType": "tip",
            "clientMessageId": "c1",
            "replyTo": "m0",
            "metadata": {"k": "v"},
        },
        f.SendMessage,
    ),
    ({"type": "typing", "roomId": "r1", "isTyping": False}, f.Typing),
    ({"type": "update_presence", "status": "away", "customStatus": "lunch"}, f.UpdatePresence),
    ({"type": "add_reaction", "messageId": "m1", "emoji": "👍"}, f.AddReaction),
    ({"type": "remove_reaction", "messageId": "m1", "emoji": "👍"}, f.RemoveReaction),
    ({"type": "edit_message", "messageId": "m1", "content": {"text": "fixed"}}, f.EditMessage),
    ({"type": "delete_message", "messageId": "m1"}, f.DeleteMessage),
    ({"type": "mark_read", "roomId": "r1", "seq": 0}, f.MarkRead),
    ({"type": "get_history", "roomId": "r1", "before": 10, "limit": 50}, f.GetHistory),
    ({"type": "get_history", "roomId": "r1", "after": 3}, f.GetHistory),
    ({"type": "resume", "rooms": {"r1": 5, "r2": 0}}, f.Resume),
    ({"type": "resume", "rooms": {}}, f.Resume),
    ({"type": "ping"}, f.Ping),
]


def test_every_frame_type_is_covered_here() -> None:
    assert {frame["type"] for frame, _ in VALID} == set(f.FRAME_MODELS)


@pytest.mark.parametrize(("frame", "model"), VALID, ids=[v[0]["type"] for v in VALID])
def test_valid_frames_decode_to_their_model(frame: dict[str, Any], model: type[f.Frame]) -> None:
    decoded = decode_frame(encode({**frame, "id": "req-1"}))
    assert type(decoded) is model
    assert decoded.id == "req-1"
    for key, value in frame.items():
        assert getattr(decoded, key) == value


def test_frames_decode_from_bytes_and_without_an_id() -> None:
    decoded = decode_frame(b'{"type":"ping"}')
    assert isinstance(decoded, f.Ping)
    assert decoded.id is None


def test_integer_ids_are_kept() -> None:
    assert decode_frame('{"type":"ping","id":42}').id == 42


def test_defaults_are_filled_in() -> None:
    send = decode_frame(encode({"type": "send_message", "roomId": "r", "content": {"text": "x"}}))
    assert isinstance(send, f.SendMessage)
    assert send.messageType is MessageType.TEXT
    assert send.clientMessageId is None and send.replyTo is None
    typing = decode_frame(encode({"type": "typing", "roomId": "r"}))
    assert isinstance(typing, f.Typing) and typing.isTyping is True
    presence = decode_frame(encode({"type": "update_presence", "status": "busy"}))
    assert isinstance(presence, f.UpdatePresence) and presence.status is PresenceStatus.BUSY


def test_unknown_extra_fields_are_ignored() -> None:
    assert isinstance(decode_frame('{"type":"ping","extra":{"a":[1,2]}}'), f.Ping)


def test_unicode_text_survives() -> None:
    frame = {"type": "send_message", "roomId": "r", "content": {"text": "héllo 👋 世界"}}
    decoded = decode_frame(encode(frame).encode())
    assert isinstance(decoded, f.SendMessage)
    assert decoded.content == {"text": "héllo 👋 世界"}


# -- not a frame at all ----------------------------------------------------------------


@pytest.mark.parametrize("raw", ["", "{", "not json", '{"type":"ping",}', "{'type':'ping'}"])
def test_invalid_json_is_an_invalid_frame(raw: str) -> None:
    error = refused(raw)
    assert error.code is ErrorCode.INVALID_FRAME
    assert error.frame_id is None


@pytest.mark.parametrize("raw", ['["ping"]', "[]", "5", "3.5", '"ping"', "null", "true"])
def test_json_that_is_not_an_object_is_an_invalid_frame(raw: str) -> None:
    error = refused(raw)
    assert error.code is ErrorCode.INVALID_FRAME
    assert error.frame_id is None


def test_deep_nesting_is_an_invalid_frame_not_a_crash() -> None:
    assert refused("[" * 5000 + "]" * 5000).code is ErrorCode.INVALID_FRAME
    nested = '{"type":"ping","id":"n","x":' + "[" * 5000 + "]" * 5000 + "}"
    assert refused(nested).code is ErrorCode.INVALID_FRAME
    objects = '{"a":' * 5000 + "1" + "}" * 5000
    assert refused(objects).code is ErrorCode.INVALID_FRAME


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe", b'{"type":"ping","id":"\xc3\x28"}', b'{"type":"\xed\xa0\x80"}'],
)
def test_invalid_utf8_is_an_invalid_frame(raw: bytes) -> None:
    assert refused(raw).code is ErrorCode.INVALID_FRAME


def test_lone_surrogate_in_text_is_an_invalid_frame() -> None:
    assert refused('{"type":"ping","id":"\ud800"}').code is ErrorCode.INVALID_FRAME


# -- unknown types ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "explode", "id": "a1"},
        {"id": "a1"},
        {"type": 7, "id": "a1"},
        {"type": None, "id": "a1"},
        {"type": ["ping"], "id": "a1"},
        {"type": "Ping", "id": "a1"},
    ],
)
def test_unknown_missing_or_non_string_type_echoes_the_id(frame: dict[str, Any]) -> None:
    error = refused(encode(frame))
    assert error.code is ErrorCode.UNKNOWN_TYPE
    assert error.frame_id == "a1"
    assert error.details is not None
    assert set(error.details["known"]) == set(f.FRAME_MODELS)


def test_unknown_type_echoes_integer_ids() -> None:
    assert refused('{"type":"nope","id":9}').frame_id == 9


def test_a_huge_unknown_type_is_not_reflected() -> None:
    error = refused(encode({"type": "x" * 10_000}))
    assert error.code is ErrorCode.UNKNOWN_TYPE
    assert "x" * 100 not in error.message


# -- wrong field types -----------------------------------------------------------------

WRONG: list[dict[str, Any]] = [
    {"type": "typing", "roomId": "r1", "isTyping": "yes"},
    {"type": "typing", "roomId": "r1", "isTyping": 1},
    {"type": "mark_read", "roomId": "r1", "seq": "5"},
    {"type": "mark_read", "roomId": "r1", "seq": -1},
    {"type": "mark_read", "roomId": "r1", "seq": 2**60},
    {"type": "mark_read", "roomId": "r1", "seq": 1.5},
    {"type": "mark_read", "roomId": "r1"},
    {"type": "join_room", "roomId": 123},
    {"type": "join_room", "roomId": ""},
    {"type": "join_room", "roomId": "r" * 129},
    {"type": "join_room"},
    {"type": "join_room", "roomId": "r1", "sinceSeq": -1},
    {"type": "send_message", "roomId": "r1", "content": "hello"},
    {"type": "send_message", "roomId": "r1", "content": ["hello"]},
    {"type": "send_message", "roomId": "r1"},
    {"type": "send_message", "roomId": "r1", "content": {"text": "x"}, "messageType": "gif"},
    {"type": "update_presence", "status": "invisible"},
    {"type": "update_presence", "status": "away", "customStatus": "x" * 141},
    {"type": "add_reaction", "messageId": "m1", "emoji": ""},
    {"type": "add_reaction", "messageId": "m1", "emoji": "x" * 65},
    {"type": "get_history", "roomId": "r1", "limit": 0},
    {"type": "get_history", "roomId": "r1", "limit": 1001},
    {"type": "resume", "rooms": {"r1": "5"}},
    {"type": "resume", "rooms": {"r1": -1}},
    {"type": "resume", "rooms": {"": 1}},
    {"type": "resume", "rooms": ["r1"]},
]


@pytest.mark.parametrize("frame", WRONG, ids=[str(i) for i in range(len(WRONG))])
def test_wrong_fields_are_invalid_payload_with_the_id_echoed(frame: dict[str, Any]) -> None:
    error = refused(encode({**frame, "id": "req-7"}))
    assert error.code is ErrorCode.INVALID_PAYLOAD
    assert error.frame_id == "req-7"
    assert error.message.startswith(frame["type"])
    assert error.details is not None and error.details["errors"]


def test_invalid_payload_names_the_field() -> None:
    error = refused(encode({"type": "typing", "roomId": "r", "isTyping": "yes", "id": 1}))
    assert error.details is not None
    assert error.details["errors"][0]["field"] == "isTyping"


@pytest.mark.parametrize("frame_id", [True, False])
def test_boolean_ids_are_not_echoed(frame_id: bool) -> None:
    unknown = refused(encode({"type": "nope", "id": frame_id}))
    assert unknown.code is ErrorCode.UNKNOWN_TYPE and unknown.frame_id is None
    invalid = refused(encode({"type": "mark_read", "roomId": "r", "seq": "x", "id": frame_id}))
    assert invalid.code is ErrorCode.INVALID_PAYLOAD and invalid.frame_id is None


def test_ids_over_128_characters_are_not_echoed() -> None:
    long_id = "i" * 129
    assert refused(encode({"type": "nope", "id": long_id})).frame_id is None
    error = refused(encode({"type": "mark_read", "roomId": "r", "seq": "x", "id": long_id}))
    assert error.code is ErrorCode.INVALID_PAYLOAD and error.frame_id is None
    assert refused(encode({"type": "nope", "id": "i" * 128})).frame_id == "i" * 128


def test_unsafe_integer_ids_are_not_echoed() -> None:
    assert refused(encode({"type": "nope", "id": 2**60})).frame_id is None
    assert refused(encode({"type": "nope", "id": 2**53})).frame_id == 2**53


@pytest.mark.parametrize("frame_id", ["i" * 129, 2**60, -(2**60), 1.5, [1], {"a": 1}])
def test_ids_that_could_not_be_echoed_are_refused_on_valid_frames(frame_id: object) -> None:
    # An ack must be able to carry the id back; one an error would drop is refused.
    error = refused(encode({"type": "ping", "id": frame_id}))
    assert error.code is ErrorCode.INVALID_PAYLOAD
    assert error.frame_id is None


def test_frame_errors_are_chat_errors() -> None:
    error = refused("{")
    assert isinstance(error, ChatError)
    assert error.http_status == 400


# -- encoding --------------------------------------------------------------------------


def test_room_event_frame_is_json_with_the_documented_shape() -> None:
    data = orjson.dumps({"text": 'hé "quoted" 👋', "n": [1, 2]})
    frame = orjson.loads(room_event_frame("new_message", 'room "1"', 42, data))
    assert frame == {
        "type": "new_message",
        "roomId": 'room "1"',
        "seq": 42,
        "data": {"text": 'hé "quoted" 👋', "n": [1, 2]},
    }


def test_ack_frame_shape() -> None:
    assert orjson.loads(ack_frame("a1", {"seq": 3})) == {
        "type": "ack",
        "id": "a1",
        "data": {"seq": 3},
    }
    assert orjson.loads(ack_frame(7)) == {"type": "ack", "id": 7, "data": None}


@pytest.mark.parametrize(
    "room_id", ["r1", 'a,"data":{"x":1}', 'q"uo\\te', "\u00e9\u4e2d\U0001f600", ',"data":']
)
@pytest.mark.parametrize("frame_id", [7, -(2**53), "c-1", ',"data":', None])
def test_an_ack_from_the_events_encoded_data_is_the_ack_of_its_view(
    room_id: str, frame_id: str | int | None
) -> None:
    # A send's ack reuses the bytes of its event's data instead of encoding the view
    # again; the result must be byte for byte what encoding the view gives.
    content = {"text": ',"data":"}', "a": 1, "data": {"data": [1, {"data": None}]}}
    view = {"id": "m1", "chatRoomId": room_id, "content": content, "seq": 12}
    frame = room_event_frame("new_message", room_id, 12, orjson.dumps(view))
    data = event_data(frame)
    assert data == orjson.dumps(view)
    assert ack_frame(frame_id, data) == ack_frame(frame_id, view)
    assert orjson.loads(ack_frame(frame_id, data)) == {"type": "ack", "id": frame_id, "data": view}


def test_error_frame_shape_with_and_without_id() -> None:
    error = ChatError(ErrorCode.RATE_LIMITED, "slow down", {"retryAfter": 1.5})
    assert orjson.loads(error_frame(error, "a1")) == {
        "type": "error",
        "id": "a1",
        "error": {"code": "rate_limited", "message": "slow down", "details": {"retryAfter": 1.5}},
    }
    bare = orjson.loads(error_frame(ChatError(ErrorCode.INVALID_FRAME, "bad")))
    assert bare == {"type": "error", "error": {"code": "invalid_frame", "message": "bad"}}


def test_error_frame_of_a_decoding_failure_round_trips() -> None:
    error = refused(encode({"type": "nope", "id": "z"}))
    body = orjson.loads(error_frame(error, error.frame_id))
    assert body["id"] == "z"
    assert body["error"]["code"] == "unknown_type"


def test_ephemeral_and_server_frames() -> None:
    assert orjson.loads(ephemeral_frame("typing_started", "r1", {"userId": "a"})) == {
        "type": "typing_started",
        "roomId": "r1",
        "data": {"userId": "a"},
    }
    assert orjson.loads(ephemeral_frame("presence_updated", None, {})) == {
        "type": "presence_updated",
        "data": {},
    }
    assert orjson.loads(server_frame("connected", {"userId": "a"})) == {
        "type": "connected",
        "data": {"userId": "a"},
    }


@pytest.mark.parametrize(
    "value",
    [{"n": 2**70}, {"t": "\ud800"}, {"x": float("nan")}, {"x": float("inf")}],
    ids=["huge-int", "lone-surrogate", "nan", "infinity"],
)
def test_check_wire_json_refuses_what_cannot_be_stored_unchanged(value: dict[str, object]) -> None:
    from chatsphere.protocol.codec import check_wire_json

    with pytest.raises(ChatError) as caught:
        check_wire_json(value, "content")
    assert caught.value.code is ErrorCode.INVALID_PAYLOAD


async def test_embedded_api_refuses_unstorable_content(service: ChatSphereService) -> None:
    room = await service.create_chat_room("ann", "public_room", "r")
    with pytest.raises(ChatError) as caught:
        await service.send_message("ann", room.id, {"text": "hi", "n": 2**70})
    assert caught.value.code is ErrorCode.INVALID_PAYLOAD
    assert await service.get_history("ann", room.id) == []


def _send_with_content(depth: int, as_bytes: bool) -> str | bytes:
    inner = "[" * (depth - 2) + "]" * (depth - 2)  # content {..} and d [..] add two levels
    raw = '{"type":"send_message","id":"d","roomId":"r","content":{"text":"x","d":[' + inner
    raw += "]}}"
    return raw.encode() if as_bytes else raw


@pytest.mark.parametrize("as_bytes", [False, True])
def test_content_deeper_than_storable_is_refused_and_the_limit_itself_is_not(
    as_bytes: bool,
) -> None:
    error = refused(_send_with_content(201, as_bytes))
    assert error.code is ErrorCode.INVALID_PAYLOAD
    assert "nested deeper than 200" in str(error)
    frame = decode_frame(_send_with_content(200, as_bytes))
    assert isinstance(frame, f.SendMessage)


def test_brackets_inside_strings_do_not_make_a_frame_too_deep() -> None:
    text = "{[" * 500
    frame = decode_frame(encode({"type": "send_message", "roomId": "r", "content": {"text": text}}))
    assert isinstance(frame, f.SendMessage)
    assert frame.content["text"] == text
