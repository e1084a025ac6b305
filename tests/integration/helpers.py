"""Helpers shared by the end-to-end tests: raw WebSocket clients, barriers, room set-up.

Every node in these tests runs the in-process memory bus, which hands a committed
event to every local socket before the actor's ack is written. So "X did not get an
event" is checked without sleeping: once the actor has its ack, ``settle(x)`` sends a
ping on X's connection and everything the server wrote to X before the pong is then in
X's queue (one TCP stream keeps order).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

from chatsphere.client import ChatClient, ClientError, Event
from chatsphere.server import Node

Json = dict[str, Any]


async def settle(client: ChatClient) -> list[Event]:
    """Round-trip a ping, then return (and drop) every event queued before the pong."""
    await client.ping()
    return [e for e in client.drain_events() if e.get("type") != "pong"]


async def expect_error(awaitable: Awaitable[Any], code: str) -> ClientError:
    """Await a client request that must be refused with ``code``."""
    try:
        result = await awaitable
    except ClientError as exc:
        assert exc.code == code, f"expected {code!r}, got {exc.code!r}: {exc.message}"
        return exc
    raise AssertionError(f"expected error {code!r}, got ack {result!r}")


def problem_code(response: httpx.Response) -> str:
    """The stable code of a REST problem response (and check its shape)."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["message"], str), body
    code = body["error"]["code"]
    assert isinstance(code, str)
    return code


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    assert problem_code(response) == code, response.text


async def create_room(
    client: httpx.AsyncClient, room_type: str = "public_room", name: str = "room", **extra: Any
) -> Json:
    body: Json = {"type": room_type, **extra}
    if name:
        body["name"] = name
    response = await client.post("/rooms", json=body)
    assert response.status_code == 201, response.text
    room: Json = response.json()
    return room


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``check`` until it is true (a deadline for liveness, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class RawClient:
    """A bare ``websockets`` connection speaking JSON text frames (no SDK behaviour)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = 0

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> RawClient:
        ws = await connect(url, open_timeout=10, close_timeout=2, ping_interval=None, **kwargs)
        return cls(ws)

    async def send_json(self, frame: Any) -> None:
        await self.ws.send(orjson.dumps(frame).decode())

    async def recv(self, timeout: float = 10.0) -> Json:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        frame: Json = orjson.loads(raw)
        return frame

    async def until(self, predicate: Callable[[Json], bool], timeout: float = 10.0) -> Json:
        """The next frame matching ``predicate``; earlier ones are dropped."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv(timeout)
                if predicate(frame):
                    return frame

    async def collect_until_ack(self, frame_id: str, timeout: float = 10.0) -> list[Json]:
        """Every frame up to and including the ack/error of ``frame_id``."""
        seen: list[Json] = []
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv(timeout)
                seen.append(frame)
                if frame.get("id") == frame_id and frame.get("type") in ("ack", "error"):
                    return seen

    async def request(self, frame: Json, timeout: float = 10.0) -> Json:
        """Send ``frame`` with a fresh id; return its ack or error frame."""
        self._ids += 1
        frame_id = f"r{self._ids}"
        await self.send_json({**frame, "id": frame_id})
        return (await self.collect_until_ack(frame_id, timeout))[-1]

    async def sync(self) -> list[Json]:
        """Ping with an id; return the frames that arrived before the ack (pong excluded)."""
        self._ids += 1
        frame_id = f"sync{self._ids}"
        await self.send_json({"type": "ping", "id": frame_id})
        frames = await self.collect_until_ack(frame_id)
        assert frames[-1]["type"] == "ack", frames[-1]
        return [f for f in frames[:-1] if f.get("type") != "pong"]

    async def close(self) -> None:
        await self.ws.close()


def ws_url(node: Node, token: str | None = None, **query: str) -> str:
    params = {**({"token": token} if token else {}), **query}
    qs = "&".join(f"{k}={v}" for k, v in params.items())
    return f"ws://127.0.0.1:{node.ws_port}/ws" + (f"?{qs}" if qs else "")
