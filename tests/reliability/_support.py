"""Real ChatSphere server processes for the reliability tests.

Each :class:`ServerProcess` runs ``python -m chatsphere serve`` in a subprocess on
fixed ports and a fixed SQLite file, so it can be killed (SIGKILL), stopped
(SIGTERM) and started again on the same ports and database. Clients talk to it
over real sockets: the SDK, raw ``websockets`` connections and httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

from chatsphere.auth import TokenAuthority
from chatsphere.client import ChatClient, Event
from chatsphere.config import Settings

SECRET = "reliability-secret-0123456789abcdef-0123456789"
_AUTHORITY = TokenAuthority(SECRET)
#: Generous: two cores, and other engineers run load tests on the same machine.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def token(user_id: str) -> str:
    return _AUTHORITY.mint(user_id)


class ServerProcess:
    """One node as an OS process: ``start``, ``kill`` (SIGKILL), ``terminate`` (SIGTERM)."""

    def __init__(self, workdir: Path, **settings: str | int | float | bool) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ws_port = free_port()
        self.http_port = free_port()
        self.db_path = workdir / "chat.db"
        self.log_path = workdir / "server.log"
        env = {
            k: v
            for k, v in os.environ.items()
            # Only what this test sets reaches the node (no stray WS_PORT, BUS, … from outside).
            if k.lower() not in Settings.model_fields
        }
        env.update(
            {
                "ENVIRONMENT": "development",
                "JWT_SECRET": SECRET,
                "HOST": "127.0.0.1",
                "WS_PORT": str(self.ws_port),
                "HTTP_PORT": str(self.http_port),
                "DATABASE_URL": f"sqlite+aiosqlite:///{self.db_path}",
                "RATE_LIMIT_ENABLED": "false",
                "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(
            {
                k.upper(): str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in settings.items()
            }
        )
        if os.environ.get("RELIABILITY_SRC"):
            # Run the nodes from another source tree, e.g. one with a fix reverted, to
            # check that a test catches the bug: RELIABILITY_SRC=/tmp/src-without-fix.
            env["PYTHONPATH"] = os.environ["RELIABILITY_SRC"]
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.exit_codes: list[int] = []

    # -- addresses -------------------------------------------------------------------
    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/ws"

    def url_for(self, listener: str) -> str:
        """``"ws"``: the dedicated listener on WS_PORT; ``"http"``: ASGI ``/ws`` on HTTP_PORT."""
        port = self.ws_port if listener == "ws" else self.http_port
        return f"ws://127.0.0.1:{port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def api_url(self) -> str:
        return f"{self.http_url}/api/v1"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- lifecycle -------------------------------------------------------------------
    async def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the process and wait until ``/health`` answers on the HTTP port."""
        assert not self.running, "already running"
        with self.log_path.open("ab") as log:
            log.write(f"--- start #{self.starts + 1}\n".encode())
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "chatsphere", "serve"],
                cwd=self.workdir,  # no .env from the repository
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"server exited with {self.proc.returncode} during start-up:\n"
                        + self.log_tail()
                    )
                with contextlib.suppress(httpx.HTTPError):
                    response = await http.get(f"{self.http_url}/health")
                    if response.status_code == 200 and response.json().get("status") == "ok":
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not healthy after {timeout}s:\n{self.log_tail()}")
                await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs at all (a crash, or the OOM killer)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT)
        self.exit_codes.append(self.proc.returncode)

    async def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then wait for the process to exit on its own; its exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return await self.wait(timeout)

    async def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"server did not exit within {timeout}s:\n{self.log_tail()}")
            await asyncio.sleep(0.05)
        self.exit_codes.append(self.proc.returncode)
        return self.proc.returncode

    def cleanup(self) -> None:
        """Fixture teardown: never leave a server behind."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- clients ---------------------------------------------------------------------
    def rest(self, user_id: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {token(user_id)}"},
            timeout=30,
        )

    def sdk(self, user_id: str, listener: str = "ws", **kwargs: Any) -> ChatClient:
        kwargs.setdefault("max_backoff", 1.0)
        return RecordingClient(self.url_for(listener), token=token(user_id), **kwargs)

    def raw(self, user_id: str, listener: str = "ws", **kwargs: Any) -> Any:
        """``async with server.raw("bob") as ws`` — a bare websockets connection."""
        kwargs.setdefault("compression", None)
        kwargs.setdefault("ping_interval", None)
        kwargs.setdefault("open_timeout", 30)
        kwargs.setdefault("close_timeout", 5)
        return connect(f"{self.url_for(listener)}?token={token(user_id)}", **kwargs)

    async def metrics(self) -> dict[str, float]:
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.get(f"{self.http_url}/metrics")
        response.raise_for_status()
        values: dict[str, float] = {}
        for line in response.text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values


class RecordingClient(ChatClient):
    """The SDK client, also recording every room event frame as it arrived on the wire.

    The SDK drops an event whose ``seq`` it has already seen, so the application sees
    each event once whatever the server does; ``raw_seqs`` shows what the *server*
    sent, before that filter, so a duplicate at the resume seam would show up here.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.raw_seqs: dict[str, list[int]] = {}
        self.seen: dict[str, list[Event]] = {}

    def _on_frame(self, msg: Event) -> None:
        seq, room = msg.get("seq"), msg.get("roomId")
        if isinstance(seq, int) and isinstance(room, str):
            self.raw_seqs.setdefault(room, []).append(seq)
            if seq > self.last_seq.get(room, 0):
                self.seen.setdefault(room, []).append(msg)
        super()._on_frame(msg)


async def create_room(server: ServerProcess, owner: str, name: str = "room") -> str:
    async with server.rest(owner) as http:
        response = await http.post("/rooms", json={"type": "public_room", "name": name})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def join_rest(server: ServerProcess, user_id: str, room_id: str) -> None:
    async with server.rest(user_id) as http:
        response = await http.post(f"/rooms/{room_id}/members", json={})
    assert response.status_code == 201, response.text


async def all_history(server: ServerProcess, user_id: str, room_id: str) -> list[dict[str, Any]]:
    """Every message in the room, paging ``GET /rooms/{id}/messages?after=…&limit=…``."""
    messages: list[dict[str, Any]] = []
    after = 0
    async with server.rest(user_id) as http:
        while True:
            response = await http.get(
                f"/rooms/{room_id}/messages", params={"after": after, "limit": 200}
            )
            assert response.status_code == 200, response.text
            page = response.json()["messages"]
            if not page:
                return messages
            messages.extend(page)
            after = page[-1]["seq"]


async def send_frame(ws: ClientConnection, frame: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(frame).decode())


async def recv_json(ws: ClientConnection, timeout: float = 30.0) -> Event:
    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancellation of an
    # enclosing timeout when the frame arrives at the same moment, and then never stop.
    async with asyncio.timeout(timeout):
        raw = await ws.recv()
    result: Event = orjson.loads(raw)
    return result


async def request_raw(
    ws: ClientConnection,
    frame: dict[str, Any],
    *,
    on_event: Callable[[Event], None] | None = None,
    timeout: float = 60.0,
) -> Event:
    """Send ``frame`` (which has an ``id``) and read until its ack or error.

    Frames that arrive before the answer (replayed or live events) go to ``on_event``.
    """
    await send_frame(ws, frame)
    async with asyncio.timeout(timeout):
        while True:
            msg = await recv_json(ws, timeout)
            if msg.get("id") == frame["id"] and msg.get("type") in ("ack", "error"):
                return msg
            if on_event is not None:
                on_event(msg)


async def room_events_from_zero(server: ServerProcess, user_id: str, room_id: str) -> list[Event]:
    """The room's whole event log, as a fresh connection resuming from seq 0 receives it."""
    events: list[Event] = []

    def keep(msg: Event) -> None:
        if msg.get("roomId") == room_id and isinstance(msg.get("seq"), int):
            events.append(msg)

    async with server.raw(user_id, max_size=None) as ws:
        assert (await recv_json(ws))["type"] == "connected"
        answer = await request_raw(
            ws, {"type": "resume", "id": "r0", "rooms": {room_id: 0}}, on_event=keep
        )
        assert answer["type"] == "ack", answer
        assert "error" not in answer["data"]["rooms"][room_id], answer
    return events


async def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def gaps(seqs: list[int], first: int, last: int) -> list[int]:
    """Numbers in ``first..last`` missing from ``seqs``."""
    present = set(seqs)
    return [n for n in range(first, last + 1) if n not in present]


def duplicates(values: list[Any]) -> list[Any]:
    seen: set[Any] = set()
    repeated = []
    for value in values:
        if value in seen:
            repeated.append(value)
        seen.add(value)
    return repeated


@contextlib.asynccontextmanager
async def closing_clients(*clients: ChatClient) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
