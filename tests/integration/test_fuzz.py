"""Fuzzing a live node: hypothesis frames over one WebSocket, schemathesis over REST.

One node per module runs in a background thread with its own event loop; the tests
are synchronous and drive it with the ``websockets`` sync client, so hypothesis runs
plain functions. Each case sends one frame, then a ``ping`` with a fresh id: every
answer to the fuzz frame has arrived once that ping's ack is back. The rules:

* a frame that is not a JSON object (or is binary) gets exactly one ``error`` with
  code ``invalid_frame`` and no ``id``;
* an object with a readable ``id`` gets exactly one ``ack`` or ``error`` carrying it;
* any other object gets at most one answer;
* every error has a code from :class:`~chatsphere.errors.ErrorCode`, never
  ``internal_error``; a frame over ``WS_MAX_PAYLOAD`` closes the socket with 1009;
* afterwards the node is healthy and a neighbour in the same room still gets messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from chatsphere.domain.messages import MessageType
from chatsphere.domain.presence import PresenceStatus
from chatsphere.errors import ErrorCode
from chatsphere.protocol.frames import FRAME_MODELS
from chatsphere.server import Node
from tests.conftest import make_settings
from tests.integration.conftest import FUZZ_COUNTS

MAX_PAYLOAD = 65_536
CODES = {code.value for code in ErrorCode}
FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)


# -- a node in a background thread -------------------------------------------------------
@dataclass
class LiveNode:
    node: Node
    loop: asyncio.AbstractEventLoop
    room_id: str = ""
    message_id: str = ""

    def token(self, user_id: str) -> str:
        return self.node.service.authority.mint(user_id)

    def ws_url(self, user_id: str) -> str:
        return f"ws://127.0.0.1:{self.node.ws_port}/ws?token={self.token(user_id)}"

    def http(self, user_id: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token(user_id)}"} if user_id else {}
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.node.http_port}", headers=headers, timeout=10
        )


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-node", daemon=True)
    thread.start()
    config = make_settings(tmp_path_factory.mktemp("fuzz"), ws_max_payload=MAX_PAYLOAD)

    async def start() -> Node:
        node = Node(config)
        await node.start()
        return node

    node = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    live = LiveNode(node, loop)
    try:
        with live.http("owner") as owner:
            room = owner.post("/api/v1/rooms", json={"type": "public_room", "name": "fuzz"})
            assert room.status_code == 201, room.text
            live.room_id = room.json()["id"]
            for user in ("fuzzer", "neighbour"):
                with live.http(user) as member:
                    joined = member.post(f"/api/v1/rooms/{live.room_id}/members", json={})
                    assert joined.status_code == 201, joined.text
            sent = owner.post(
                f"/api/v1/rooms/{live.room_id}/messages", json={"content": {"text": "target"}}
            )
            assert sent.status_code == 201, sent.text
            live.message_id = sent.json()["id"]
        yield live
        assert thread.is_alive(), "the node's event loop died"
    finally:
        asyncio.run_coroutine_threadsafe(node.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# -- one fuzzing connection and one neighbour ------------------------------------------
@dataclass
class Session:
    live: LiveNode
    user_id: str
    ws: ClientConnection = field(init=False)
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    syncs: int = 0
    cases: int = 0
    closed_1009: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.open()

    def open(self) -> None:
        self.stack.close()  # the previous connection, if any
        self.ws = self.stack.enter_context(
            connect(self.live.ws_url(self.user_id), max_size=None, open_timeout=10, close_timeout=2)
        )
        hello = orjson.loads(self.ws.recv(timeout=10))
        assert hello["type"] == "connected", hello
        self.join()

    def join(self) -> None:
        self.ws.send(json.dumps({"type": "join_room", "roomId": self.live.room_id, "id": "j"}))
        frames = self.until_answer("j")
        assert frames[-1]["type"] == "ack", frames[-1]

    def until_answer(self, frame_id: str) -> list[dict[str, Any]]:
        frames = []
        while True:
            frame = orjson.loads(self.ws.recv(timeout=10))
            frames.append(frame)
            if frame.get("id") == frame_id and frame.get("type") in ("ack", "error"):
                return frames

    def exchange(self, payload: str | bytes) -> list[dict[str, Any]]:
        """Send ``payload``, then a ping; the frames that came before the ping's ack."""
        self.cases += 1
        self.syncs += 1
        sync_id = f"§sync-{self.syncs}"
        self.ws.send(payload)
        self.ws.send(orjson.dumps({"type": "ping", "id": sync_id}).decode())
        frames = self.until_answer(sync_id)
        assert frames[-1]["type"] == "ack", frames[-1]
        return frames[:-1]

    def oversize(self, payload: str) -> None:
        """A frame over WS_MAX_PAYLOAD: closed with 1009; then connect again."""
        self.cases += 1
        self.closed_1009 += 1
        self.outcomes["closed 1009"] += 1
        self.ws.send(payload)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                self.ws.recv(timeout=10)
        assert closed.value.rcvd is not None, closed.value
        assert closed.value.rcvd.code == 1009, closed.value
        self.open()

    def close(self) -> None:
        self.stack.close()


@pytest.fixture(scope="module")
def fuzzer(live: LiveNode) -> Iterator[Session]:
    session = Session(live, "fuzzer")
    yield session
    session.close()


@pytest.fixture(scope="module")
def neighbour(live: LiveNode) -> Iterator[Session]:
    session = Session(live, "neighbour")
    yield session
    session.close()


def _readable_id(frame: dict[str, Any]) -> str | int | None:
    raw = frame.get("id")
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int) and abs(raw) <= 2**53:
        return raw
    if isinstance(raw, str) and len(raw) <= 128:
        return raw
    return None


def check_answers(payload: str | bytes, frames: list[dict[str, Any]]) -> None:
    answers = [f for f in frames if f.get("type") in ("ack", "error")]
    for answer in answers:
        if answer["type"] == "error":
            code = answer["error"]["code"]
            assert code in CODES, answer
            assert code != "internal_error", (payload, answer)
            assert isinstance(answer["error"]["message"], str)
    parsed: Any = None
    if isinstance(payload, str):
        try:
            parsed = orjson.loads(payload)
        except orjson.JSONDecodeError:
            parsed = None
    if not isinstance(parsed, dict):
        assert len(answers) == 1, (payload, frames)
        assert answers[0]["type"] == "error", answers
        assert answers[0]["error"]["code"] == "invalid_frame", answers
        assert "id" not in answers[0], answers
        return
    frame_id = _readable_id(parsed)
    if frame_id is not None:
        assert len(answers) == 1, (payload, frames)
        assert answers[0]["id"] == frame_id, (payload, answers)
        return
    assert len(answers) <= 1, (payload, frames)
    if answers and "id" in answers[0]:
        assert answers[0]["id"] == parsed.get("id"), (payload, answers)


def send_case(session: Session, payload: str | bytes) -> None:
    size = len(payload.encode() if isinstance(payload, str) else payload)
    if size > MAX_PAYLOAD:
        assert isinstance(payload, str)
        session.oversize(payload)
        return
    frames = session.exchange(payload)
    check_answers(payload, frames)
    answers = [f for f in frames if f.get("type") in ("ack", "error")]
    for answer in answers or [{"type": "no answer"}]:
        kind = answer["type"]
        session.outcomes[kind if kind != "error" else answer["error"]["code"]] += 1


def neighbour_still_served(live: LiveNode, neighbour: Session) -> None:
    with live.http("owner") as owner:
        sent = owner.post(
            f"/api/v1/rooms/{live.room_id}/messages", json={"content": {"text": "still there?"}}
        )
        assert sent.status_code == 201, sent.text
        marker = sent.json()["id"]
        health = owner.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok", health.text
    while True:
        frame = orjson.loads(neighbour.ws.recv(timeout=10))
        if frame.get("type") == "new_message" and frame["data"]["id"] == marker:
            return


def _record(name: str, session: Session, before: int, outcomes: Counter[str]) -> int:
    ran = session.cases - before
    seen = session.outcomes - outcomes
    FUZZ_COUNTS[name] = f"{ran} ({', '.join(f'{k} {v}' for k, v in seen.most_common())})"
    return ran


# -- strategies -------------------------------------------------------------------------
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(["", "ping", "join_room", "\u0000", "☃", "😀" * 3])
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
frame_ids = (
    st.none()
    | st.text(max_size=140)
    | st.integers()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.booleans()
    | st.floats()
    | json_values
)
FIELDS = sorted({name for model in FRAME_MODELS.values() for name in model.model_fields} - {"type"})


def _encode(value: Any, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)


def valid_values(live: LiveNode) -> dict[str, st.SearchStrategy[Any]]:
    """Mostly well-formed values per field, so that frames get past validation."""
    room = st.sampled_from([live.room_id, live.room_id, "no-such-room"])
    message = st.sampled_from([live.message_id, "no-such-message"])
    seq = st.integers(min_value=0, max_value=60)
    return {
        "roomId": room,
        "messageId": message,
        "replyTo": message,
        "content": st.fixed_dictionaries({"text": st.text(min_size=1, max_size=200)}),
        "messageType": st.just("text") | st.sampled_from([t.value for t in MessageType]),
        "status": st.sampled_from([s.value for s in PresenceStatus]),
        "customStatus": st.none() | st.text(max_size=150),
        "emoji": st.sampled_from(["👍", "❤️", "🔥"]) | st.text(min_size=1, max_size=8),
        "isTyping": st.booleans(),
        "seq": seq,
        "sinceSeq": seq,
        "before": seq,
        "after": seq,
        "limit": st.integers(min_value=1, max_value=100),
        "rooms": st.dictionaries(room, seq, max_size=2),
        "clientMessageId": st.text(min_size=1, max_size=40),
        "metadata": st.dictionaries(st.text(max_size=8), json_scalars, max_size=3),
    }


def typed_frames(live: LiveNode) -> st.SearchStrategy[dict[str, Any]]:
    """A frame of a real type with plausible fields, then up to two random mutations."""
    valid = valid_values(live)

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        kind = draw(st.sampled_from(sorted(FRAME_MODELS)))
        frame: dict[str, Any] = {"type": kind}
        for name, info in FRAME_MODELS[kind].model_fields.items():
            if name not in ("type", "id") and (info.is_required() or draw(st.booleans())):
                frame[name] = draw(valid[name])
        for _ in range(draw(st.integers(min_value=0, max_value=2))):
            how = draw(st.sampled_from(["replace", "drop", "add"]))
            if how == "replace" and len(frame) > 1:
                name = draw(st.sampled_from(sorted(set(frame) - {"type"})))
                frame[name] = draw(json_values | st.integers() | st.text(max_size=300))
            elif how == "drop" and len(frame) > 1:
                del frame[draw(st.sampled_from(sorted(set(frame) - {"type"})))]
            else:
                frame[draw(st.sampled_from([*FIELDS, "extra"]))] = draw(json_values)
        if draw(st.integers(min_value=0, max_value=3)):  # mostly with an id, so acked
            frame["id"] = draw(st.text(max_size=20) | st.integers(0, 10**6) | frame_ids)
        return frame

    return build()


# -- the tests ---------------------------------------------------------------------------
def test_fuzz_random_json_values(
    live: LiveNode, fuzzer: Session, neighbour: Session, record_property: Any
) -> None:
    before, outcomes = fuzzer.cases, fuzzer.outcomes.copy()

    @settings(FUZZ, max_examples=70)
    @given(value=json_values, ascii_only=st.booleans())
    def run(value: Any, ascii_only: bool) -> None:
        send_case(fuzzer, _encode(value, ascii_only))

    run()
    ran = _record("random JSON values", fuzzer, before, outcomes)
    record_property("fuzz_cases", ran)
    assert ran >= 35
    neighbour_still_served(live, neighbour)


def test_fuzz_frames_with_a_valid_type(
    live: LiveNode, fuzzer: Session, neighbour: Session, record_property: Any
) -> None:
    before, outcomes = fuzzer.cases, fuzzer.outcomes.copy()

    @settings(FUZZ, max_examples=140)
    @given(frame=typed_frames(live), ascii_only=st.booleans())
    def run(frame: dict[str, Any], ascii_only: bool) -> None:
        send_case(fuzzer, _encode(frame, ascii_only))
        if frame["type"] == "leave_room":
            fuzzer.join()  # stay in the room, so later frames reach the services

    run()
    ran = _record("frames with a valid type", fuzzer, before, outcomes)
    record_property("fuzz_cases", ran)
    assert ran >= 70
    neighbour_still_served(live, neighbour)


def test_fuzz_huge_numbers_and_strings(
    live: LiveNode, fuzzer: Session, neighbour: Session, record_property: Any
) -> None:
    before, outcomes = fuzzer.cases, fuzzer.outcomes.copy()
    huge_numbers = (
        st.integers(min_value=2**53, max_value=2**200)
        | st.integers(max_value=-(2**53))
        | st.floats(min_value=1e300, allow_infinity=False)
        | st.just(10**400)
    )

    @settings(FUZZ, max_examples=40)
    @given(
        kind=st.sampled_from(sorted(FRAME_MODELS)),
        field_name=st.sampled_from(FIELDS),
        size=st.integers(min_value=1_000, max_value=MAX_PAYLOAD + 20_000),
        number=huge_numbers,
        frame_id=frame_ids,
    )
    def run(kind: str, field_name: str, size: int, number: int | float, frame_id: Any) -> None:
        frame = {
            "type": kind,
            "id": frame_id,
            "roomId": live.room_id,
            field_name: "x" * size,
            "seq": number,
            "content": {"text": "y" * (size // 2)},
        }
        send_case(fuzzer, _encode(frame, True))

    run()
    # One frame surely over WS_MAX_PAYLOAD, whatever hypothesis drew.
    closes = fuzzer.closed_1009
    send_case(fuzzer, _encode({"type": "ping", "id": "big", "pad": "x" * MAX_PAYLOAD}, True))
    assert fuzzer.closed_1009 == closes + 1
    ran = _record("huge numbers and strings", fuzzer, before, outcomes)
    record_property("fuzz_cases", ran)
    assert ran >= 20
    neighbour_still_served(live, neighbour)


def test_fuzz_deep_nesting(
    live: LiveNode, fuzzer: Session, neighbour: Session, record_property: Any
) -> None:
    before, outcomes = fuzzer.cases, fuzzer.outcomes.copy()

    @settings(FUZZ, max_examples=25)
    @given(
        depth=st.integers(min_value=1, max_value=20_000),
        brackets=st.sampled_from([("[", "]"), ('{"a":', "}")]),
        wrapped=st.booleans(),
    )
    def run(depth: int, brackets: tuple[str, str], wrapped: bool) -> None:
        opening, closing = brackets
        nested = opening * depth + "1" + closing * depth
        payload = f'{{"type":"ping","id":"deep","x":{nested}}}' if wrapped else nested
        send_case(fuzzer, payload)

    run()
    ran = _record("deep nesting", fuzzer, before, outcomes)
    record_property("fuzz_cases", ran)
    assert ran >= 12
    neighbour_still_served(live, neighbour)


def test_fuzz_invalid_utf8_binary_frames(
    live: LiveNode, fuzzer: Session, neighbour: Session, record_property: Any
) -> None:
    before, outcomes = fuzzer.cases, fuzzer.outcomes.copy()

    def invalid_utf8(data: bytes) -> bool:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return True
        return False

    @settings(FUZZ, max_examples=25)
    @given(
        data=st.binary(min_size=1, max_size=2_000).filter(invalid_utf8)
        | st.binary(max_size=200).map(lambda b: b + b"\xc3\x28" + b)
        | st.just(b'{"type":"ping","id":"bin"}')
    )
    def run(data: bytes) -> None:
        send_case(fuzzer, data)

    run()
    ran = _record("binary frames", fuzzer, before, outcomes)
    record_property("fuzz_cases", ran)
    assert ran >= 12
    neighbour_still_served(live, neighbour)


def test_invalid_utf8_in_a_text_frame_closes_only_that_socket(
    live: LiveNode, neighbour: Session
) -> None:
    victim = Session(live, "fuzzer")
    try:
        victim.ws.send(b'{"type":"ping","id":"\xff\xfe"}', text=True)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                victim.ws.recv(timeout=10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1007  # invalid frame payload data
    finally:
        victim.close()
    neighbour_still_served(live, neighbour)


def test_schemathesis_finds_no_server_errors_or_schema_drift(
    live: LiveNode, tmp_path: Path, record_property: Any
) -> None:
    # Known identifiers, so generated requests reach the services, not only 404s.
    (tmp_path / "schemathesis.toml").write_text(
        "[parameters]\n"
        f'"path.room_id" = "{live.room_id}"\n'
        f'"path.message_id" = "{live.message_id}"\n'
    )
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(tmp_path / "schemathesis.toml"),
        "run",
        f"http://127.0.0.1:{live.node.http_port}/openapi.json",
        "--checks",
        "all",
        # Business rules the schema cannot express (a room name unless it is a DM, content
        # per message type) make some schema-valid requests 422, and DELETE leaves a
        # tombstone that GET still returns (documented): these two checks do not apply.
        "--exclude-checks",
        "positive_data_acceptance,use_after_free",
        "--header",
        f"Authorization: Bearer {live.token('owner')}",
        "--max-examples",
        "20",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--no-color",
    ]
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False
    )
    output = result.stdout + result.stderr
    generated = re.search(r"(\d+) generated", output)
    cases = int(generated.group(1)) if generated else 0
    FUZZ_COUNTS["schemathesis REST cases"] = str(cases)
    record_property("schemathesis_cases", cases)
    assert result.returncode == 0, output[-8000:]
    assert cases > 200, output[-4000:]
    assert "Operations:" in output
