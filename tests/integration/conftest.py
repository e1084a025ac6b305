"""Fixtures for end-to-end tests that need a node with non-default settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatsphere.client import ChatClient
from chatsphere.server import Node
from tests.conftest import make_settings, rest_client, sdk_client, token_for
from tests.integration.helpers import RawClient, ws_url

#: Cases run by the fuzz tests, by kind; printed at the end of the run.
FUZZ_COUNTS: dict[str, str] = {}

NodeFactory = Callable[..., Awaitable[Node]]
NodeClientFactory = Callable[..., Awaitable[ChatClient]]
NodeRestFactory = Callable[[Node, str | None], httpx.AsyncClient]
RawFactory = Callable[..., Awaitable[RawClient]]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FUZZ_COUNTS:
        terminalreporter.section("fuzz cases run")
        for kind, count in FUZZ_COUNTS.items():
            terminalreporter.write_line(f"{kind}: {count}")


@pytest.fixture
async def start_node(tmp_path: Path) -> AsyncIterator[NodeFactory]:
    """``await start_node(max_message_length=50)`` → a running node with those settings."""
    nodes: list[Node] = []

    async def factory(**overrides: Any) -> Node:
        home = tmp_path / f"node{len(nodes)}"
        home.mkdir()
        node = Node(make_settings(home, **overrides))
        await node.start()
        nodes.append(node)
        return node

    yield factory
    for node in reversed(nodes):
        await node.stop()


@pytest.fixture
async def connect_to(start_node: NodeFactory) -> AsyncIterator[NodeClientFactory]:
    """``await connect_to(node, "alice")`` → an SDK client on that node."""
    clients: list[ChatClient] = []

    async def factory(node: Node, user_id: str, **kwargs: Any) -> ChatClient:
        client = sdk_client(node, user_id, **kwargs)
        await client.connect()
        clients.append(client)
        return client

    yield factory
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


@pytest.fixture
async def rest_to(start_node: NodeFactory) -> AsyncIterator[NodeRestFactory]:
    """``rest_to(node, "alice")`` → an httpx client for that node's /api/v1."""
    clients: list[httpx.AsyncClient] = []

    def factory(node: Node, user_id: str | None) -> httpx.AsyncClient:
        client = rest_client(node, user_id)
        clients.append(client)
        return client

    yield factory
    await asyncio.gather(*(c.aclose() for c in clients))


@pytest.fixture
async def raw(node: Node) -> AsyncIterator[RawFactory]:
    """``await raw("alice")`` → a bare websockets client on the default ``node``."""
    clients: list[RawClient] = []

    async def factory(user_id: str, **kwargs: Any) -> RawClient:
        client = await RawClient.open(ws_url(node, token_for(node, user_id)), **kwargs)
        hello = await client.recv()
        assert hello["type"] == "connected", hello
        clients.append(client)
        return client

    yield factory
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
