"""A WebSocket client written out by hand, so server pings and pongs are seen on the wire.

Shared by the in-process heartbeat tests and the real-process ones. It records every ping
(payload and arrival time), answers each as ``answer`` says, and keeps the close frame.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct
import time
from typing import Literal

Answer = Literal["echo", "silent", "wrong"]


class HandRolledSocket:
    def __init__(self, port: int, token: str, answer: Answer = "echo") -> None:
        self._port = port
        self._token = token
        self._answer = answer
        self.pings: list[tuple[float, bytes]] = []  # (arrival, payload)
        self.close_frame: tuple[int, str] | None = None
        self.closed = asyncio.Event()
        self._reader: asyncio.StreamReader
        self._writer: asyncio.StreamWriter
        self._task: asyncio.Task[None] | None = None

    @property
    def close_code(self) -> int | None:
        return self.close_frame[0] if self.close_frame else None

    async def open(self, timeout: float = 30.0) -> None:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self._port)
        key = base64.b64encode(os.urandom(16)).decode()
        self._writer.write(
            (
                f"GET /ws?token={self._token} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{self._port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(self._reader.readuntil(b"\r\n\r\n"), timeout)
        assert head.startswith(b"HTTP/1.1 101"), head
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                first, second = await self._reader.readexactly(2)
                opcode, size = first & 0x0F, second & 0x7F
                if size == 126:
                    (size,) = struct.unpack("!H", await self._reader.readexactly(2))
                elif size == 127:
                    (size,) = struct.unpack("!Q", await self._reader.readexactly(8))
                payload = await self._reader.readexactly(size)
                if opcode == 0x9:  # ping
                    self.pings.append((time.monotonic(), payload))
                    if self._answer == "echo":
                        self._send(0xA, payload)
                    elif self._answer == "wrong":
                        self._send(0xA, b"not-" + payload)
                elif opcode == 0x8:  # close
                    code = struct.unpack("!H", payload[:2])[0] if payload else 1005
                    self.close_frame = (code, payload[2:].decode())
                    break
        self.closed.set()

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert len(payload) < 126
        self._writer.write(bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked)

    async def wait_for_pings(self, count: int, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.pings) < count:
                assert not self.closed.is_set(), self.close_frame
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
