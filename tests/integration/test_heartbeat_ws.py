"""Heartbeats on the websockets listener (WS_PORT), in process: the ping is written on the
wire, its matching pong keeps the connection, no pong (or a wrong one) closes it with 4001.

The client is written out by hand so pings and pongs are seen and chosen on the wire.
"""

from __future__ import annotations

import asyncio

import pytest

from chatsphere.protocol.closecodes import CloseCode
from chatsphere.server import Node
from tests.conftest import token_for
from tests.integration.conftest import NodeFactory
from tests.integration.helpers import RawClient, ws_url
from tests.wire_socket import Answer, HandRolledSocket

WAIT = 30.0  # an upper bound for "eventually", never a measurement


@pytest.fixture
async def fast_node(start_node: NodeFactory) -> Node:
    # Sub-second: the wheel still pings every (one-second) slot.
    return await start_node(heartbeat_interval=0.5, heartbeat_timeout=0.5)


async def open_socket(node: Node, user: str, answer: Answer) -> HandRolledSocket:
    sock = HandRolledSocket(node.ws_port, token_for(node, user), answer)
    await sock.open()
    return sock


async def test_a_client_that_answers_pings_stays_open(fast_node: Node) -> None:
    sock = await open_socket(fast_node, "answering", "echo")
    try:
        await sock.wait_for_pings(3, WAIT)
        assert sock.close_frame is None
        assert len({p for _, p in sock.pings}) == len(sock.pings)  # each ping its own payload
        assert fast_node.listener.heartbeat.timeouts == 0
    finally:
        await sock.close()


async def test_a_client_that_stops_answering_is_closed_with_4001(fast_node: Node) -> None:
    answering = await open_socket(fast_node, "answering", "echo")
    silent = await open_socket(fast_node, "silent", "silent")
    try:
        await asyncio.wait_for(silent.closed.wait(), WAIT)
        assert silent.close_frame == (CloseCode.HEARTBEAT_TIMEOUT, "no pong")
        assert len(silent.pings) == 1  # no second ping while one is unanswered
        assert fast_node.listener.heartbeat.timeouts == 1
        # The neighbour that answers is untouched, and keeps being pinged.
        seen = len(answering.pings)
        await answering.wait_for_pings(seen + 2, WAIT)
        assert answering.close_frame is None
        assert fast_node.listener.heartbeat.timeouts == 1
    finally:
        await asyncio.gather(answering.close(), silent.close())


async def test_a_pong_with_another_payload_does_not_count(fast_node: Node) -> None:
    sock = await open_socket(fast_node, "confused", "wrong")
    try:
        await asyncio.wait_for(sock.closed.wait(), WAIT)
        assert sock.close_frame == (CloseCode.HEARTBEAT_TIMEOUT, "no pong")
    finally:
        await sock.close()


async def test_a_websockets_client_is_kept_and_still_talks(fast_node: Node) -> None:
    # The library client answers pings by itself, like browsers do.
    client = await RawClient.open(ws_url(fast_node, token_for(fast_node, "lib")))
    try:
        assert (await client.recv())["type"] == "connected"
        await asyncio.sleep(3.5)  # three heartbeat rounds: closed by now if pongs went unseen
        assert await client.sync() == []
        assert client.ws.close_code is None
        assert fast_node.listener.heartbeat.timeouts == 0
    finally:
        await client.close()
