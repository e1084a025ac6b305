"""Operating a node: health, metrics, API descriptions, and the command line."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import httpx
import jwt
import pytest

from chatsphere.client import ChatClient
from chatsphere.protocol.frames import FRAME_MODELS
from chatsphere.server import Node
from tests.conftest import SECRET, ClientFactory

BIN = Path(sys.executable).parent
CHATSPHERE = str(BIN / "chatsphere")

# DESIGN.md's REST list: (method, path) with path parameters written as {}.
DESIGN_ROUTES = {
    ("post", "/api/v1/rooms"),
    ("get", "/api/v1/rooms"),
    ("get", "/api/v1/rooms/{}"),
    ("patch", "/api/v1/rooms/{}"),
    ("post", "/api/v1/rooms/{}/members"),
    ("delete", "/api/v1/rooms/{}/members/{}"),
    ("get", "/api/v1/rooms/{}/messages"),
    ("post", "/api/v1/rooms/{}/messages"),
    ("get", "/api/v1/messages/{}"),
    ("patch", "/api/v1/messages/{}"),
    ("delete", "/api/v1/messages/{}"),
    ("post", "/api/v1/messages/{}/reactions"),
    ("delete", "/api/v1/messages/{}/reactions/{}"),
    ("put", "/api/v1/presence"),
    ("get", "/health"),
    ("get", "/metrics"),
}


def _env(**extra: str) -> dict[str, str]:
    """The current environment without ChatSphere settings, plus ``extra``."""
    names = ("JWT_", "WS_", "HTTP_", "ENVIRONMENT", "AUTH_MODE", "DATABASE_URL", "BUS", "HOST")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(names)}
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _check_health(body: dict[str, object], connections: int | None = None) -> None:
    assert body["status"] == "ok"
    assert body["store"] is True
    assert body["bus"] is True
    assert isinstance(body["connections"], int)
    if connections is not None:
        assert body["connections"] == connections
    memory = body["memory"]
    assert isinstance(memory, dict)
    assert isinstance(memory["rssBytes"], int) and memory["rssBytes"] > 0
    assert isinstance(body["uptime"], int | float) and body["uptime"] >= 0
    assert isinstance(body["timestamp"], str)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", body["timestamp"]
    )


async def test_health_on_both_ports(node: Node, connect: ClientFactory) -> None:
    await connect("alice")
    await connect("bob")
    async with httpx.AsyncClient(timeout=10) as http:
        for port in (node.http_port, node.ws_port):
            response = await http.get(f"http://127.0.0.1:{port}/health")
            assert response.status_code == 200, (port, response.text)
            assert response.headers["content-type"].startswith("application/json")
            _check_health(response.json(), connections=2)


async def test_metrics_are_prometheus_text(node: Node, connect: ClientFactory) -> None:
    alice = await connect("alice")
    await alice.ping()
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"http://127.0.0.1:{node.http_port}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE chatsphere_connections gauge" in text
    assert re.search(r"^chatsphere_connections 1(\.0)?$", text, re.MULTILINE), text
    frames = re.search(r"^chatsphere_frames_total (\S+)$", text, re.MULTILINE)
    assert frames is not None and float(frames.group(1)) >= 1
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            assert re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})?", name), line
            float(value)


async def test_openapi_lists_every_designed_route(node: Node) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"http://127.0.0.1:{node.http_port}/openapi.json")
        docs = await http.get(f"http://127.0.0.1:{node.http_port}/docs")
    assert response.status_code == 200
    spec = response.json()
    assert spec["openapi"].startswith("3.")
    listed = {
        (method, re.sub(r"\{[^}]+\}", "{}", path))
        for path, operations in spec["paths"].items()
        for method in operations
    }
    missing = DESIGN_ROUTES - listed
    assert not missing, f"routes in DESIGN.md missing from /openapi.json: {sorted(missing)}"
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_asyncapi_describes_every_client_frame(node: Node) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"http://127.0.0.1:{node.http_port}/asyncapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["asyncapi"] == "3.0.0"
    messages = doc["components"]["messages"]
    schemas = doc["components"]["schemas"]
    for kind, model in FRAME_MODELS.items():
        assert kind in messages, f"no AsyncAPI message for client frame {kind!r}"
        ref = messages[kind]["payload"]["$ref"]
        assert ref == f"#/components/schemas/{model.__name__}"
        assert schemas[model.__name__]["properties"]["type"]["const"] == kind
    sent = {ref["$ref"].rsplit("/", 1)[1] for ref in doc["operations"]["sendFrame"]["messages"]}
    assert sent == set(FRAME_MODELS)
    for server_event in ("new_message", "error", "ack", "presence_updated", "typing_started"):
        assert f"server.{server_event}" in messages


async def _run(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 60
) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cli_token_is_accepted_by_the_node(node: Node, tmp_path: Path) -> None:
    env = _env(JWT_SECRET=SECRET, ENVIRONMENT="development")
    code, out, err = await _run(
        CHATSPHERE, "token", "alice", "--role", "admin", env=env, cwd=tmp_path
    )
    assert code == 0, err
    token = out.strip()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    assert claims["roles"] == ["admin"]

    client = ChatClient(f"ws://127.0.0.1:{node.ws_port}/ws", token=token, reconnect=False)
    await client.connect()
    try:
        assert client.user_id == "alice"
    finally:
        await client.close()
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{node.http_port}/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ) as http:
        created = await http.post("/rooms", json={"type": "public_room", "name": "cli"})
    assert created.status_code == 201, created.text
    assert created.json()["createdBy"] == "alice"


async def _start_serve(tmp_path: Path) -> tuple[asyncio.subprocess.Process, int, int]:
    """``python -m chatsphere serve`` on free ports, once its ready line is printed.

    Other processes on this machine open ports too: if one takes a port between the
    probe and the bind, try again with new ones.
    """
    for _attempt in range(3):
        ws_port, http_port = _free_port(), _free_port()
        env = _env(
            WS_PORT=str(ws_port),
            HTTP_PORT=str(http_port),
            JWT_SECRET=SECRET,
            ENVIRONMENT="development",
            DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}",
            HOST="127.0.0.1",
            SHUTDOWN_GRACE="3",
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "chatsphere",
            "serve",
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None and process.stderr is not None
        ready = await asyncio.wait_for(process.stdout.readline(), 60)
        if b"ready" in ready:
            return process, ws_port, http_port
        if process.returncode is None:
            process.kill()
        err = (await process.stderr.read()).decode()
        await process.wait()
        if "address already in use" not in err.lower():
            raise AssertionError(f"no ready line: {ready!r}\n{err[-4000:]}")
    raise AssertionError("could not find free ports in three attempts")


async def test_serve_answers_health_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    process, ws_port, http_port = await _start_serve(tmp_path)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            for port in (http_port, ws_port):
                response = await http.get(f"http://127.0.0.1:{port}/health")
                assert response.status_code == 200, response.text
                _check_health(response.json(), connections=0)
        # A live client is told to go away (1001) when the node stops.
        client = ChatClient(
            f"ws://127.0.0.1:{ws_port}/ws",
            token=jwt.encode({"sub": "alice", "exp": 2**31 - 1}, SECRET, algorithm="HS256"),
            reconnect=False,
        )
        await client.connect()
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 3 + 15)
        assert code == 0, (await process.stderr.read()).decode() if process.stderr else code
        await asyncio.wait_for(_closed(client), 10)
        assert client.close_code == 1001
        await client.close()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _closed(client: ChatClient) -> None:
    while client.close_code is None:
        await asyncio.sleep(0.02)


async def test_serve_in_production_without_secret_fails_naming_it(tmp_path: Path) -> None:
    env = _env(ENVIRONMENT="production", WS_PORT=str(_free_port()))
    code, out, err = await _run(sys.executable, "-m", "chatsphere", "serve", env=env, cwd=tmp_path)
    assert code != 0
    assert "JWT_SECRET" in err + out
    assert "Traceback" not in err


@pytest.mark.timeout(120)
async def test_demo_runs_its_twelve_steps(tmp_path: Path) -> None:
    code, out, err = await _run(
        CHATSPHERE, "demo", "--pace", "0", env=_env(), cwd=tmp_path, timeout=100
    )
    assert code == 0, err
    steps = [int(m.group(1)) for m in re.finditer(r"^\s*(\d+)\. ", out, re.MULTILINE)]
    assert steps == list(range(1, 13)), out
    assert "Done." in out
