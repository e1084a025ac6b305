"""Socket.IO baseline: python-socketio ``AsyncServer`` (ASGI) on uvicorn, with rooms.

This is the stack a Python team would usually reach for. Socket.IO is its own protocol, so
the load generator drives it in its ``socketio`` mode (raw Engine.IO v4 over the WebSocket
transport). The events mirror the ChatSphere frames:

- ``connect`` (auth ``{"token": JWT}``; the ``sub`` claim is read unverified, no checks);
- ``join_room`` ``{"roomId"}`` → enters the Socket.IO room, returns the ack payload;
- ``send_message`` ``{"roomId","content","clientMessageId"}`` → emits ``new_message`` to the
  room (the sender included), then returns the stored-message shape as the ack.

No persistence, no moderation. Run:
``python -m bench.baselines.socketio_server PORT [--host 127.0.0.1]``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import socketio
import uvicorn

sio = socketio.AsyncServer(
    async_mode="asgi",
    cors_allowed_origins=[],
    logger=False,
    engineio_logger=False,
    json=None,
)
app = socketio.ASGIApp(sio)

_users: dict[str, str] = {}
_joined: dict[str, set[str]] = {}
_seqs: dict[str, int] = {}


def _sub_claim(token: str) -> str | None:
    """Return the unverified ``sub`` claim of a JWT, if it has one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    with contextlib.suppress(ValueError, orjson.JSONDecodeError):
        payload = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        if isinstance(payload, dict) and isinstance(payload.get("sub"), str):
            return str(payload["sub"])
    return None


async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    """Accept every connection; remember the claimed user id."""
    token = auth.get("token", "") if isinstance(auth, dict) else ""
    _users[sid] = _sub_claim(token) or sid
    _joined[sid] = set()


async def disconnect(sid: str, *args: Any) -> None:
    """Forget the connection (Socket.IO leaves its rooms by itself)."""
    _users.pop(sid, None)
    _joined.pop(sid, None)


async def join_room(sid: str, data: dict[str, Any]) -> dict[str, Any]:
    """Enter a room and acknowledge."""
    room_id = str(data.get("roomId"))
    await sio.enter_room(sid, room_id)
    _joined.setdefault(sid, set()).add(room_id)
    return {"roomId": room_id, "seq": _seqs.get(room_id, 0)}


async def leave_room(sid: str, data: dict[str, Any]) -> dict[str, Any]:
    """Leave a room and acknowledge."""
    room_id = str(data.get("roomId"))
    await sio.leave_room(sid, room_id)
    _joined.get(sid, set()).discard(room_id)
    return {"roomId": room_id}


async def send_message(sid: str, data: dict[str, Any]) -> dict[str, Any]:
    """Fan a message out to its room, then acknowledge the sender."""
    room_id = str(data.get("roomId"))
    if room_id not in _joined.get(sid, ()):
        return {"error": {"code": "not_a_member", "message": "join the room first"}}
    seq = _seqs[room_id] = _seqs.get(room_id, 0) + 1
    message: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "chatRoomId": room_id,
        "senderId": _users.get(sid, sid),
        "type": "text",
        "content": data.get("content"),
        "metadata": {"clientMessageId": data.get("clientMessageId")},
        "reactions": [],
        "replyTo": None,
        "status": "sent",
        "createdAt": datetime.now(UTC).isoformat(),
        "seq": seq,
    }
    await sio.emit(
        "new_message",
        {"type": "new_message", "roomId": room_id, "seq": seq, "data": message},
        room=room_id,
    )
    return message


for _handler in (connect, disconnect, join_room, leave_room, send_message):
    sio.on(_handler.__name__, _handler)


def cli() -> None:
    """Parse arguments and serve with uvicorn (its defaults: uvloop, httptools, websockets)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        backlog=1024,
        lifespan="off",
    )


if __name__ == "__main__":
    cli()
