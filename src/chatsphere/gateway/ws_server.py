"""The WebSocket listener on WS_PORT, on the ``websockets`` library.

Chosen over the ASGI WebSocket path by measurement (see bench/RESULTS.md): frames are
written straight into the library's protocol object, the same bytes to every
recipient. The listener also answers ``GET /health``; everything else HTTP lives on
HTTP_PORT.

Heartbeat pings (heartbeat.py) are written without waiting and without a coroutine per
ping: :class:`WebsocketsPinger` calls the sans-I/O protocol's ``send_ping`` and writes
``data_to_send()`` to the socket, and :class:`HeartbeatServerConnection` (passed as
``serve(create_connection=…)``, a public parameter) overrides ``process_event`` to
notice the matching pong. Overriding ``process_event`` is the one reliance on the
library's internals, checked at import. Rejected: entries in websockets' table of
pending pings with a future and a callback each (a private table, ``pong_waiters`` in
websockets 15 and ``pending_pings`` in the installed 17: renamed once already);
taking any frame from the client as proof of life (no cheaper, since every frame is
parsed anyway, and weaker: a client that sends but no longer reads would pass); and
writing the six ping bytes directly (about 2 µs less per ping than going through the
protocol, but past its state checks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Event, State

from ..auth import Principal, TokenAuthority
from ..errors import ChatError
from ..ids import new_id
from ..protocol.closecodes import CloseCode
from .connection import Connection
from .heartbeat import Heartbeat
from .hub import Hub
from .session import Sessions

log = logging.getLogger(__name__)


_last_payload: bytes | None = None
_last_wire: bytes = b""


def text_frame(payload: bytes) -> bytes:
    """The RFC 6455 frame of an unmasked, uncompressed, final text message.

    A server frame without compression is the same bytes for every recipient, so
    fan-out builds it once: the last payload's frame is remembered by identity, and a
    loop writing one event to many connections encodes it a single time.
    """
    global _last_payload, _last_wire  # a one-entry cache on the hot path
    if payload is _last_payload:
        return _last_wire
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 65_536:
        header = b"\x81\x7e" + size.to_bytes(2, "big")
    else:
        header = b"\x81\x7f" + size.to_bytes(8, "big")
    _last_payload, _last_wire = payload, header + payload
    return _last_wire


class WriteCoalescer:
    """Writes each connection's frames of one pass of the event loop in one system call.

    A socket write on loopback costs several microseconds of kernel time, more than
    building the frame. Frames written during a pass are held on their transport and
    flushed by a callback two passes later: the first pass lets the tasks that the same
    commit woke (each sender's ack follows its own message's fan-out) add their frames,
    so a sender's echo and ack leave together, and under load so do the events of one
    group commit that share a room. Latency grows by those two passes only.
    """

    __slots__ = ("_dirty", "_loop", "_scheduled")

    def __init__(self) -> None:
        self._dirty: list[WebsocketsTransport] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False

    def hold(self, transport: WebsocketsTransport) -> None:
        """Flush ``transport`` with the others at the end of this round."""
        self._dirty.append(transport)
        if not self._scheduled:
            self._scheduled = True
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self._second_pass)

    def _second_pass(self) -> None:
        assert self._loop is not None
        self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every held frame now."""
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for transport in dirty:
            transport.flush()


class WebsocketsTransport:
    """:class:`~chatsphere.gateway.connection.Transport` over a websockets connection.

    Data frames are framed by :func:`text_frame`, held until the :class:`WriteCoalescer`
    flushes them, and written to the socket transport directly; the library's protocol
    object keeps handling the handshake, control frames (ping, pong, close) and the
    closing state, which :meth:`is_open` checks before every write so nothing is written
    after a close frame.
    """

    __slots__ = (
        "_closing",
        "_coalescer",
        "_held",
        "_held_bytes",
        "_protocol",
        "_transport",
        "ws",
    )

    def __init__(self, ws: ServerConnection, coalescer: WriteCoalescer) -> None:
        self.ws = ws
        self._protocol = ws.protocol
        self._transport = ws.transport
        self._coalescer = coalescer
        self._closing = False
        self._held: list[bytes] = []
        self._held_bytes = 0

    def write_text(self, data: bytes) -> None:
        frame = text_frame(data)
        held = self._held
        if not held:
            self._coalescer.hold(self)
        held.append(frame)
        self._held_bytes += len(frame)

    def flush(self) -> None:
        """Write the held frames, unless the connection began closing meanwhile.

        Frames after a close frame would break the protocol; what a closing connection
        misses it gets back by resuming.
        """
        held = self._held
        if not held:
            return
        self._held = []
        self._held_bytes = 0
        if self._closing or self._protocol.state is not State.OPEN:
            return
        if self._transport.is_closing():
            return
        if len(held) == 1:
            self._transport.write(held[0])
        else:
            self._transport.writelines(held)

    def buffered(self) -> int:
        return int(self._transport.get_write_buffer_size()) + self._held_bytes

    def is_open(self) -> bool:
        # Closed from the moment we decide to close: nothing more is written, and a
        # fan-out that meets a slow consumer starts one close, not one per event.
        return not self._closing and self._protocol.state is State.OPEN

    def close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self.flush()  # what was written before the close goes before the close frame
        self._closing = True
        asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        # Bounded: websockets' close() first drains the write buffer, and a peer that
        # stopped reading (a slow consumer is closed exactly when its buffer is full)
        # would hold the socket, its buffers and its connection slot forever.
        try:
            async with asyncio.timeout(self.ws.close_timeout):
                await self.ws.close(code, reason)
        except TimeoutError:
            self._transport.abort()


class HeartbeatServerConnection(ServerConnection):
    """A websockets ``ServerConnection`` that notices the pong to our heartbeat ping.

    :class:`WebsocketsPinger` writes the ping itself and leaves the payload in
    :attr:`awaiting_pong`; the matching pong clears it. websockets' own ``ping()`` is
    not used: it costs a coroutine, an ``asyncio.Future`` and an entry in the library's
    private table of pending pings per ping.
    """

    #: Payload of the heartbeat ping not answered yet; None once its pong came.
    awaiting_pong: bytes | None = None

    def process_event(self, event: Event) -> None:
        awaiting = self.awaiting_pong
        if (
            awaiting is not None
            and isinstance(event, Frame)
            and event.opcode is Opcode.PONG
            and event.data == awaiting
        ):
            self.awaiting_pong = None
        super().process_event(event)


# Overriding it is the one dependency on websockets' internals: fail at import, not by
# closing every connection with 4001, if a release renames it.
if not callable(getattr(ServerConnection, "process_event", None)):  # pragma: no cover
    raise ImportError("websockets' ServerConnection.process_event is gone; see ws_server.py")


class WebsocketsPinger:
    """:class:`~chatsphere.gateway.heartbeat.Pinger` for :class:`HeartbeatServerConnection`.

    The ping goes through the library's sans-I/O protocol (``send_ping`` then
    ``data_to_send``), as websockets' ``ping()`` does once the connection is open, and
    is written to the socket without waiting for it to drain (six bytes). One ping is
    outstanding at a time (the heartbeat waits for its pong or its deadline), so a
    counter is a payload the peer cannot answer by accident with an unsolicited pong.
    """

    __slots__ = ("_seq",)

    def __init__(self) -> None:
        self._seq = 0

    def send_ping(self, conn: Connection) -> None:
        transport = conn.transport
        assert isinstance(transport, WebsocketsTransport)
        ws = transport.ws
        assert isinstance(ws, HeartbeatServerConnection)
        self._seq = seq = (self._seq + 1) & 0xFFFF_FFFF
        data = seq.to_bytes(4, "big")
        ws.awaiting_pong = data
        protocol = ws.protocol
        protocol.send_ping(data)  # the heartbeat checked is_open(): the state is OPEN
        writes = protocol.data_to_send()
        # Between an abort() and connection_lost() the state is still OPEN but the
        # socket is going away: nothing to write to (asyncio would count it and warn).
        if not ws.transport.is_closing():
            for chunk in writes:
                if chunk:
                    ws.transport.write(chunk)

    def answered(self, conn: Connection) -> bool:
        transport = conn.transport
        assert isinstance(transport, WebsocketsTransport)
        ws = transport.ws
        assert isinstance(ws, HeartbeatServerConnection)
        return ws.awaiting_pong is None


def _json_response(status: HTTPStatus, body: Any) -> Response:
    data = orjson.dumps(body)
    headers = Headers(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Connection", "close"),
        ]
    )
    return Response(status.value, status.phrase, headers, data)


class WebSocketListener:
    def __init__(
        self,
        *,
        hub: Hub,
        sessions: Sessions,
        authority: TokenAuthority,
        health: Callable[[], dict[str, Any]],
        max_connections: int,
        max_payload: int,
        send_queue_bytes: int,
        heartbeat_interval: float,
        heartbeat_timeout: float,
    ) -> None:
        self._hub = hub
        self._sessions = sessions
        self._authority = authority
        self._health = health
        self._max_connections = max_connections
        self._max_payload = max_payload
        self._send_queue_bytes = send_queue_bytes
        self._principals: dict[ServerConnection, Principal] = {}
        self._server: Server | None = None
        self.heartbeat = Heartbeat(heartbeat_interval, heartbeat_timeout, WebsocketsPinger())
        self.coalescer = WriteCoalescer()
        self.refused = 0

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        self._server = await serve(
            self._handle,
            host,
            port,
            process_request=self._process_request,
            max_size=self._max_payload,
            compression=None,  # per-message deflate costs CPU and ~64 KB per connection
            ping_interval=None,  # our Heartbeat spreads pings; see heartbeat.py
            create_connection=HeartbeatServerConnection,  # …and sees their pongs
            close_timeout=5,
            max_queue=64,
            server_header="ChatSphere",
        )
        self.heartbeat.start()

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path == "/health":
            return _json_response(HTTPStatus.OK, self._health())
        # "/" too: the seed's examples connect to ws://HOST:8080?userId=…
        if parts.path not in ("/ws", "/"):
            return _json_response(
                HTTPStatus.NOT_FOUND,
                {"error": {"code": "not_found", "message": "WebSocket endpoint is /ws"}},
            )
        if len(self._hub) + len(self._principals) >= self._max_connections:
            self.refused += 1
            return _json_response(
                HTTPStatus.SERVICE_UNAVAILABLE,
                {
                    "error": {
                        "code": "service_unavailable",
                        "message": "node is at WS_MAX_CONNECTIONS; try again later",
                    }
                },
            )
        try:
            principal = self._authority.authenticate(
                dict(parse_qsl(parts.query)), request.headers.get("Authorization")
            )
        except ChatError as exc:
            return _json_response(HTTPStatus.UNAUTHORIZED, {"error": exc.to_dict()})
        self._principals[ws] = principal
        # The handler pops it; when the handshake fails after this point (say, a plain
        # GET without Upgrade) no handler runs, and the entry would hold a slot for good.
        ws.connection_lost_waiter.add_done_callback(lambda _: self._principals.pop(ws, None))
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        principal = self._principals.pop(ws, None)
        if principal is None:  # pragma: no cover - process_request always sets it
            await ws.close(CloseCode.UNAUTHORIZED, "unauthorized")
            return
        conn = Connection(
            new_id(), principal, WebsocketsTransport(ws, self.coalescer), self._send_queue_bytes
        )
        with contextlib.suppress(ConnectionClosed):
            await self._sessions.run(conn, ws, self.heartbeat)

    async def shutdown(self, grace: float) -> None:
        """Stop accepting, close every connection with 1001, wait for handlers to finish."""
        if self._server is None:
            return
        self._server.close(close_connections=False)
        await self._sessions.close_all(grace)
        await self.heartbeat.close()
        self._server.close(close_connections=True)
        await self._server.wait_closed()
        self._server = None
