"""Shared fixtures.

Real components only: SQLite files, PostgreSQL and Redis on this machine, real
server nodes on random ports. PostgreSQL/Redis tests use CHATSPHERE_PG_URL /
CHATSPHERE_REDIS_URL (defaults: the local services); where one is not reachable
they skip with the reason, except under CI=true, where a missing service fails.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from chatsphere.app import ChatSphereService
from chatsphere.client import ChatClient
from chatsphere.config import Settings
from chatsphere.server import Node

PG_URL = os.environ.get("CHATSPHERE_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CHATSPHERE_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SECRET = "test-secret-0123456789abcdef-0123456789"


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url.replace("+asyncpg", ""))
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


def require_service(name: str, url: str, port: int) -> None:
    """Skip (or, under CI, fail) when a real service the test needs is not there."""
    if _reachable(url, port):
        return
    message = f"{name} not reachable at {url}"
    if IN_CI:
        pytest.fail(f"{message} (CI must provide it)")
    pytest.skip(message)


async def reset_postgres(url: str) -> None:
    """Drop and recreate the public schema so each test starts empty."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "development",
        "jwt_secret": SECRET,
        "host": "127.0.0.1",
        "ws_port": 0,
        "http_port": 0,
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}",
        "rate_limit_enabled": False,
        "typing_timeout": 0.5,
        "shutdown_grace": 2.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    require_service("PostgreSQL", PG_URL, 5432)
    await reset_postgres(PG_URL)
    return PG_URL


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[ChatSphereService]:
    """An embedded ChatSphereService on a fresh SQLite file."""
    async with ChatSphereService(settings) as chat:
        yield chat


@pytest.fixture
async def node(settings: Settings) -> AsyncIterator[Node]:
    """A running node (WebSocket + HTTP) on random local ports."""
    server = Node(settings)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def token_for(node: Node, user_id: str, **claims: Any) -> str:
    return node.service.authority.mint(user_id, **claims)


def sdk_client(node: Node, user_id: str, **kwargs: Any) -> ChatClient:
    """An SDK client (not yet connected) for ``user_id`` on ``node``'s WebSocket port."""
    return ChatClient(f"ws://127.0.0.1:{node.ws_port}/ws", token=token_for(node, user_id), **kwargs)


def rest_client(node: Node, user_id: str | None) -> httpx.AsyncClient:
    """An httpx client on ``node``'s /api/v1, with a Bearer token unless ``user_id`` is None."""
    headers = {"Authorization": f"Bearer {token_for(node, user_id)}"} if user_id else {}
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{node.http_port}/api/v1", headers=headers, timeout=10
    )


ClientFactory = Callable[[str], Awaitable[ChatClient]]


@pytest.fixture
async def connect(node: Node) -> AsyncIterator[ClientFactory]:
    """``await connect("alice")`` → a connected SDK client for that user."""
    clients: list[ChatClient] = []

    async def factory(user_id: str, **kwargs: Any) -> ChatClient:
        client = sdk_client(node, user_id, **kwargs)
        await client.connect()
        clients.append(client)
        return client

    yield factory
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


RestFactory = Callable[[str], httpx.AsyncClient]


@pytest.fixture
async def rest(node: Node) -> AsyncIterator[RestFactory]:
    """``rest("alice")`` → an httpx client for /api/v1 authenticated as that user."""
    clients: list[httpx.AsyncClient] = []

    def factory(user_id: str | None) -> httpx.AsyncClient:
        client = rest_client(node, user_id)
        clients.append(client)
        return client

    yield factory
    await asyncio.gather(*(c.aclose() for c in clients))
