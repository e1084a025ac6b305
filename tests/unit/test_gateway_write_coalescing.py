"""gateway/ws_server.py: frames of one loop pass leave in one system call per connection."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from chatsphere.gateway import ws_server
from chatsphere.gateway.connection import CLOSED, FULL, QUEUED
from chatsphere.gateway.ws_server import PicowsTransport, WriteCoalescer, text_frame

NO_LIMIT = 1 << 30


@dataclass
class SocketTransport:
    """Records what reaches the socket: one entry per system call."""

    calls: list[list[bytes]] = field(default_factory=list)
    closing: bool = False
    kernel_buffer: int = 0

    def write(self, data: bytes) -> None:
        self.calls.append([data])

    def writelines(self, chunks: list[bytes]) -> None:
        self.calls.append(list(chunks))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.kernel_buffer

    def abort(self) -> None:
        self.closing = True


@dataclass
class FakeWSTransport:
    """The part of picows' ``WSTransport`` the gateway's transport uses."""

    underlying_transport: SocketTransport = field(default_factory=SocketTransport)
    is_close_frame_sent: bool = False
    is_disconnected: bool = False
    closed_with: tuple[int, bytes] | None = None
    disconnects: list[bool] = field(default_factory=list)

    def send_close(self, code: int, reason: bytes) -> None:
        self.closed_with = (code, reason)
        self.is_close_frame_sent = True

    def disconnect(self, graceful: bool = True) -> None:
        self.disconnects.append(graceful)


def make(coalescer: WriteCoalescer) -> tuple[PicowsTransport, FakeWSTransport]:
    ws = FakeWSTransport()
    any_ws: Any = ws
    return PicowsTransport(any_ws, coalescer), ws


async def passes(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_frames_of_one_pass_leave_in_one_write_in_order() -> None:
    coalescer = WriteCoalescer()
    transport, ws = make(coalescer)
    transport.offer(b'{"n":1}', NO_LIMIT)
    transport.offer(b'{"n":2}', NO_LIMIT)
    assert ws.underlying_transport.calls == []  # held, not written yet
    await passes(3)
    assert ws.underlying_transport.calls == [[text_frame(b'{"n":1}'), text_frame(b'{"n":2}')]]


async def test_a_frame_written_by_a_task_the_same_pass_woke_joins_the_write() -> None:
    # The writer fans a commit out, then wakes the sender, whose ack is written in the
    # next pass: the echo and the ack still leave together.
    coalescer = WriteCoalescer()
    transport, ws = make(coalescer)
    woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def sender() -> None:
        await woken
        transport.offer(b"ack", NO_LIMIT)

    task = asyncio.get_running_loop().create_task(sender())
    await asyncio.sleep(0)  # the sender is now waiting for its commit
    transport.offer(b"echo", NO_LIMIT)
    woken.set_result(None)
    await task
    await passes(3)
    assert ws.underlying_transport.calls == [[text_frame(b"echo"), text_frame(b"ack")]]


async def test_each_connection_gets_its_own_write() -> None:
    coalescer = WriteCoalescer()
    first, ws1 = make(coalescer)
    second, ws2 = make(coalescer)
    first.offer(b"a", NO_LIMIT)
    second.offer(b"b", NO_LIMIT)
    first.offer(b"c", NO_LIMIT)
    await passes(3)
    assert ws1.underlying_transport.calls == [[text_frame(b"a"), text_frame(b"c")]]
    assert ws2.underlying_transport.calls == [[text_frame(b"b")]]
    # A later pass starts a new round.
    second.offer(b"d", NO_LIMIT)
    await passes(3)
    assert ws2.underlying_transport.calls == [[text_frame(b"b")], [text_frame(b"d")]]


async def test_held_frames_count_as_buffered_for_the_slow_consumer_check() -> None:
    coalescer = WriteCoalescer()
    transport, ws = make(coalescer)
    ws.underlying_transport.kernel_buffer = 10
    transport.offer(b"x" * 100, NO_LIMIT)
    assert transport.buffered() == 10 + len(text_frame(b"x" * 100))
    await passes(3)
    assert transport.buffered() == 10


async def test_offer_queues_refuses_when_full_and_never_after_a_close() -> None:
    coalescer = WriteCoalescer()
    transport, ws = make(coalescer)
    ws.underlying_transport.kernel_buffer = 10
    assert transport.offer(b"x" * 100, limit=10) == QUEUED  # 10 waiting: not over 10
    # Now the held frame counts too: 10 + 102 bytes wait.
    assert transport.offer(b"y", limit=111) == FULL
    assert transport.offer(b"y", limit=112) == QUEUED
    transport.close(4000, "slow consumer")
    assert transport.offer(b"z", limit=1_000_000) == CLOSED
    later, ws2 = make(coalescer)
    ws2.is_disconnected = True
    assert later.offer(b"z", limit=1_000_000) == CLOSED
    await passes(3)
    assert ws.underlying_transport.calls == [[text_frame(b"x" * 100), text_frame(b"y")]]
    assert ws2.underlying_transport.calls == []


async def test_close_writes_what_was_held_before_the_close_frame() -> None:
    coalescer = WriteCoalescer()
    transport, ws = make(coalescer)
    transport.offer(b"last words", NO_LIMIT)
    transport.close(4000, "slow consumer")
    assert ws.underlying_transport.calls == [[text_frame(b"last words")]]
    assert ws.closed_with == (4000, b"slow consumer")
    assert not transport.is_open()
    assert transport.offer(b"after the close", NO_LIMIT) == CLOSED
    await passes(3)
    assert ws.underlying_transport.calls == [[text_frame(b"last words")]]  # nothing after the close


async def test_an_unanswered_close_drops_the_socket_after_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ws_server, "CLOSE_TIMEOUT", 0.01)
    transport, ws = make(WriteCoalescer())
    transport.close(4000, "slow consumer")
    transport.close(4000, "slow consumer")  # one close frame, one timer
    await asyncio.sleep(0.05)
    assert ws.disconnects == [False]  # aborted: a slow consumer would never drain


async def test_an_answered_close_cancels_the_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ws_server, "CLOSE_TIMEOUT", 0.01)
    transport, ws = make(WriteCoalescer())
    transport.close(1001, "going away")
    transport.closing_handshake_done()
    transport.disconnected()
    await asyncio.sleep(0.05)
    assert ws.disconnects == [True]  # the graceful close only


async def test_nothing_is_written_once_the_library_sent_a_close_frame() -> None:
    coalescer = WriteCoalescer()
    transport, ws = make(coalescer)
    transport.offer(b"too late", NO_LIMIT)
    ws.is_close_frame_sent = True  # say, picows answered a protocol error meanwhile
    await passes(3)
    assert ws.underlying_transport.calls == []
    assert transport.buffered() == 0


async def test_nothing_is_written_to_a_socket_going_away() -> None:
    coalescer = WriteCoalescer()
    transport, ws = make(coalescer)
    transport.offer(b"too late", NO_LIMIT)
    ws.underlying_transport.closing = True  # aborted, connection_lost not yet called
    await passes(3)
    assert ws.underlying_transport.calls == []
