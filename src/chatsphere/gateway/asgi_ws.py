"""``/ws`` on the ASGI app (HTTP_PORT), for deployments that expose a single port.

Same protocol, same sessions as the dedicated listener on WS_PORT. ASGI sends are
coroutines, so each connection gets a bounded byte queue drained by its own pump
task; the dedicated listener avoids that cost and is the one the benchmark measures
as the default (see bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..auth import TokenAuthority
from ..errors import ChatError, ErrorCode
from ..ids import new_id
from ..protocol.closecodes import CloseCode
from .connection import CLOSED, FULL, QUEUED, Connection
from .hub import Hub
from .session import Sessions


class AsgiTransport:
    """:class:`~chatsphere.gateway.connection.Transport` over an ASGI WebSocket."""

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket
        self._queue: deque[bytes] = deque()
        self._bytes = 0
        self._wakeup = asyncio.Event()
        self._open = True
        self.close_code: tuple[int, str] | None = None

    def offer(self, data: bytes, limit: int) -> int:
        if not self._open:
            return CLOSED
        if self._bytes > limit:
            return FULL
        self._queue.append(data)
        self._bytes += len(data)
        self._wakeup.set()
        return QUEUED

    def buffered(self) -> int:
        return self._bytes

    def is_open(self) -> bool:
        return self._open

    def close(self, code: int, reason: str) -> None:
        if self._open:
            self._open = False
            self.close_code = (code, reason)
            if code in (CloseCode.SLOW_CONSUMER, CloseCode.HEARTBEAT_TIMEOUT):
                # It is not reading: send the close frame now, not after its backlog.
                self._queue.clear()
                self._bytes = 0
            self._wakeup.set()

    async def pump(self) -> None:
        """Send queued frames in order until closed, then send the close frame."""
        websocket = self._websocket
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue and (self._open or self.close_code is not None):
                data = self._queue.popleft()
                self._bytes -= len(data)
                await websocket.send_text(data.decode())
            if not self._open:
                code, reason = self.close_code or (CloseCode.NORMAL, "")
                with contextlib.suppress(Exception):
                    await websocket.close(code, reason)
                return


async def _frames(websocket: WebSocket) -> AsyncIterator[str | bytes]:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        yield text if text is not None else message.get("bytes") or b""


class AsgiWebSocketEndpoint:
    def __init__(
        self,
        hub: Hub,
        sessions: Sessions,
        authority: TokenAuthority,
        max_connections: int,
        send_queue_bytes: int,
    ) -> None:
        self._hub = hub
        self._sessions = sessions
        self._authority = authority
        self._max_connections = max_connections
        self._send_queue_bytes = send_queue_bytes

    async def _refuse(self, websocket: WebSocket, error: ChatError, close_code: int) -> None:
        """HTTP status before the upgrade where the server supports it, as on WS_PORT."""
        if "websocket.http.response" in websocket.scope.get("extensions", {}):
            await websocket.send_denial_response(
                JSONResponse({"error": error.to_dict()}, status_code=error.http_status)
            )
        else:  # pragma: no cover - uvicorn's websockets implementations support it
            await websocket.close(close_code, error.message[:120])

    async def __call__(self, websocket: WebSocket) -> None:
        if len(self._hub) >= self._max_connections:
            error = ChatError(
                ErrorCode.SERVICE_UNAVAILABLE, "node is at WS_MAX_CONNECTIONS; try again later"
            )
            await self._refuse(websocket, error, CloseCode.TRY_AGAIN_LATER)
            return
        try:
            principal = self._authority.authenticate(
                dict(websocket.query_params), websocket.headers.get("authorization")
            )
        except ChatError as exc:
            await self._refuse(websocket, exc, CloseCode.UNAUTHORIZED)
            return
        await websocket.accept()
        transport = AsgiTransport(websocket)
        conn = Connection(new_id(), principal, transport, self._send_queue_bytes)
        pump = asyncio.get_running_loop().create_task(transport.pump())
        try:
            with contextlib.suppress(WebSocketDisconnect):
                await self._sessions.run(conn, _frames(websocket))
        finally:
            transport.close(CloseCode.NORMAL, "")
            await asyncio.wait({pump}, timeout=5)
            pump.cancel()
