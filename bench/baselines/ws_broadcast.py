"""Minimal broadcast server on the raw ``websockets`` library: the floor ChatSphere is measured on.

It speaks the subset of the ChatSphere wire protocol that the load generator uses, with no
authentication check, no persistence and no moderation:

- on connect: ``{"type":"connected","data":{"userId":...,"sessionId":...,"heartbeatInterval":25}}``
  (the user id is read, unverified, from the ``sub`` claim of ``?token=JWT`` when present);
- ``join_room`` / ``leave_room``: room membership in a dict of sets, answered with ``ack``;
- ``send_message``: the ``new_message`` event is encoded once and written to every member with
  :func:`websockets.asyncio.server.broadcast`, then the sender gets the ``ack``;
- ``ping``: ``ack``.

Run: ``python -m bench.baselines.ws_broadcast PORT [--host 127.0.0.1] [--loop uvloop|asyncio]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import signal
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection, broadcast, serve

_rooms: dict[str, set[ServerConnection]] = {}
_seqs: dict[str, int] = {}
_anon = itertools.count(1)


def _user_from_path(path: str) -> str:
    """Return the unverified ``sub`` claim of ``?token=``, or a fresh anonymous id."""
    token = parse_qs(urlsplit(path).query).get("token", [""])[0]
    parts = token.split(".")
    if len(parts) == 3:
        with contextlib.suppress(ValueError, orjson.JSONDecodeError):
            payload = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
            if isinstance(payload, dict) and isinstance(payload.get("sub"), str):
                return str(payload["sub"])
    return f"anon-{next(_anon)}"


def _ack(req_id: Any, data: Any) -> bytes:
    return orjson.dumps({"type": "ack", "id": req_id, "data": data})


def _error(req_id: Any, code: str, message: str) -> bytes:
    error = {"code": code, "message": message}
    return orjson.dumps({"type": "error", "id": req_id, "error": error})


async def handler(ws: ServerConnection) -> None:
    """Serve one connection until it closes."""
    user_id = _user_from_path(ws.request.path if ws.request else "")
    joined: set[str] = set()
    await ws.send(
        orjson.dumps(
            {
                "type": "connected",
                "data": {"userId": user_id, "sessionId": uuid.uuid4().hex, "heartbeatInterval": 25},
            }
        ),
        text=True,
    )
    try:
        async for raw in ws:
            try:
                frame = orjson.loads(raw)
            except orjson.JSONDecodeError:
                await ws.send(_error(None, "invalid_payload", "frame is not JSON"), text=True)
                continue
            if not isinstance(frame, dict):
                await ws.send(_error(None, "invalid_payload", "frame is not an object"), text=True)
                continue
            kind = frame.get("type")
            req_id = frame.get("id")
            room_id = frame.get("roomId")
            if kind == "send_message":
                if room_id not in joined:
                    await ws.send(_error(req_id, "not_a_member", "join the room first"), text=True)
                    continue
                seq = _seqs[room_id] = _seqs.get(room_id, 0) + 1
                data = {
                    "id": uuid.uuid4().hex,
                    "chatRoomId": room_id,
                    "senderId": user_id,
                    "type": "text",
                    "content": frame.get("content"),
                    "metadata": {"clientMessageId": frame.get("clientMessageId")},
                    "reactions": [],
                    "replyTo": None,
                    "status": "sent",
                    "createdAt": datetime.now(UTC).isoformat(),
                    "seq": seq,
                }
                event = orjson.dumps(
                    {"type": "new_message", "roomId": room_id, "seq": seq, "data": data}
                )
                broadcast(_rooms[room_id], event, text=True)
                await ws.send(_ack(req_id, data), text=True)
            elif kind == "join_room" and isinstance(room_id, str):
                _rooms.setdefault(room_id, set()).add(ws)
                joined.add(room_id)
                reply = {"roomId": room_id, "seq": _seqs.get(room_id, 0)}
                await ws.send(_ack(req_id, reply), text=True)
            elif kind == "leave_room" and isinstance(room_id, str):
                _rooms.get(room_id, set()).discard(ws)
                joined.discard(room_id)
                await ws.send(_ack(req_id, {"roomId": room_id}), text=True)
            elif kind == "ping":
                await ws.send(_ack(req_id, {"ts": time.time()}), text=True)
            else:
                refusal = _error(req_id, "invalid_payload", f"unsupported type {kind!r}")
                await ws.send(refusal, text=True)
    finally:
        for room_id in joined:
            _rooms.get(room_id, set()).discard(ws)


async def main(host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        handler, host, port, compression=None, max_size=1_048_576, backlog=1024, max_queue=64
    ):
        print(f"ws_broadcast listening on ws://{host}:{port}", flush=True)
        await stop


def cli() -> None:
    """Parse arguments and run the server."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args()
    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            asyncio.run(main(args.host, args.port))
        else:
            uvloop.run(main(args.host, args.port))
    else:
        asyncio.run(main(args.host, args.port))


if __name__ == "__main__":
    cli()
