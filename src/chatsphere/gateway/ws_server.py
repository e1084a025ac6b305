"""The WebSocket listener on WS_PORT, on picows.

Chosen over the ASGI WebSocket path and over the ``websockets`` library by measurement
(bench/PERFORMANCE.md): picows parses frames in Cython and calls back once per frame,
where websockets ran a Python generator, an assembler and a coroutine wake-up per
frame (~19 % of the event loop's samples in S3). Outgoing data frames are built once
(:func:`text_frame`) and the same bytes are written to every recipient's socket.

The listener also answers ``GET /health`` on the WebSocket port; everything else HTTP
lives on HTTP_PORT.

What picows leaves to us, and where it is done:

* the handshake's routing, connection cap and authentication: :meth:`WebSocketListener.route`
  answers 404/503/401 with a JSON problem body before any upgrade;
* fragmented messages and the whole-message size cap (1009): :class:`ClientListener`
  (picows itself caps each frame at WS_MAX_PAYLOAD, with 1009 too);
* UTF-8 validation of text messages (1007), binary frames (refused by the dispatcher);
* the closing handshake: a close frame from the client is answered with its code and the
  socket closed; our own close waits at most ``close_timeout`` for the client's answer;
* flow control of incoming frames: reading pauses while a connection has
  ``MAX_QUEUED_FRAMES`` frames waiting for its session, as websockets' ``max_queue`` did;
* heartbeat pings (heartbeat.py) through :class:`PicowsPinger`; picows answers the
  client's pings itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

import orjson
from picows import (
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from ..auth import Principal, TokenAuthority
from ..errors import ChatError
from ..ids import new_id
from ..protocol.closecodes import CloseCode
from .connection import CLOSED, FULL, QUEUED, Connection
from .dispatch import Started
from .heartbeat import Heartbeat
from .hub import Hub
from .session import FrameStarter, Sessions

log = logging.getLogger(__name__)

#: Seconds our close frame waits for the client's before the socket is aborted.
CLOSE_TIMEOUT = 5.0
#: Close codes that only report a state locally and are never sent (RFC 6455 §7.4.1).
_NOT_SENDABLE = frozenset({1005, 1006, 1015})
#: Frames a connection may have waiting for its session before reading pauses.
MAX_QUEUED_FRAMES = 64
#: Reading resumes once the session has taken the queue down to this.
RESUME_QUEUED_FRAMES = 16
#: The read buffer picows allocates per connection; it doubles when a frame needs more.
#: Chat frames are small, and 16 KiB (picows' default) per idle connection is RSS.
READ_BUFFER_BYTES = 2048

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


def send_close(ws: WSTransport, code: int, reason: str) -> None:
    """Send a close frame with any valid code, our 4000-4999 ones included.

    picows types the code as its ``WSCloseCode``, an IntEnum that takes any number at
    run time; its stub lists only the standard members.
    """
    ws.send_close(code, reason.encode())  # type: ignore[arg-type]


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
        self._dirty: list[PicowsTransport] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False

    def hold(self, transport: PicowsTransport) -> None:
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


class PicowsTransport:
    """:class:`~chatsphere.gateway.connection.Transport` over a picows connection.

    Data frames are framed by :func:`text_frame`, held until the :class:`WriteCoalescer`
    flushes them, and written to the socket in one call. Nothing is written once a close
    frame was sent (by us, or by picows after a protocol error) or the socket is going.
    """

    __slots__ = (
        "_closing",
        "_coalescer",
        "_held",
        "_held_bytes",
        "_raw",
        "_timer",
        "awaiting_pong",
        "ws",
    )

    def __init__(self, ws: WSTransport, coalescer: WriteCoalescer) -> None:
        self.ws = ws
        self._raw = ws.underlying_transport
        self._coalescer = coalescer
        self._closing = False
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        #: Payload of the heartbeat ping not answered yet; None once its pong came.
        self.awaiting_pong: bytes | None = None

    def offer(self, data: bytes, limit: int) -> int:
        # is_open() and buffered() inline: this runs once per recipient of every event.
        ws = self.ws
        if self._closing or ws.is_close_frame_sent or ws.is_disconnected:
            return CLOSED
        held_bytes = self._held_bytes
        if self._raw.get_write_buffer_size() + held_bytes > limit:
            return FULL
        frame = text_frame(data)
        held = self._held
        if not held:
            self._coalescer.hold(self)
        held.append(frame)
        self._held_bytes = held_bytes + len(frame)
        return QUEUED

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
        if self._closing or self.ws.is_close_frame_sent or self._raw.is_closing():
            return
        if len(held) == 1:
            self._raw.write(held[0])
        else:
            self._raw.writelines(held)

    def buffered(self) -> int:
        return int(self._raw.get_write_buffer_size()) + self._held_bytes

    def is_open(self) -> bool:
        # Closed from the moment we decide to close: nothing more is written, and a
        # fan-out that meets a slow consumer starts one close, not one per event.
        ws = self.ws
        return not (self._closing or ws.is_close_frame_sent or ws.is_disconnected)

    def close(self, code: int, reason: str) -> None:
        """Send a close frame (after what is held) and drop the socket if unanswered.

        Bounded: a peer that stopped reading (a slow consumer is closed exactly when its
        buffer is full) would otherwise hold the socket, its buffers and its slot forever.
        """
        if self._closing:
            return
        self.flush()
        self._closing = True
        ws = self.ws
        if ws.is_disconnected:
            return
        if not ws.is_close_frame_sent:
            send_close(ws, code, reason)
        self._abort_later()

    def closing_handshake_done(self) -> None:
        """The client answered our close, or closed first and we answered: drop the socket.

        The graceful disconnect waits for our buffered bytes to drain; a peer that sent
        its close and stopped reading would hold the socket, so the abort timer bounds it.
        """
        self._closing = True
        self.ws.disconnect()
        if not self.ws.is_disconnected:
            self._abort_later()

    def _abort_later(self) -> None:
        """Abort the socket in ``CLOSE_TIMEOUT`` unless it is gone by then (once)."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(
                CLOSE_TIMEOUT, self.ws.disconnect, False
            )

    def disconnected(self) -> None:
        """The socket is gone: stop the close timer and forget held frames."""
        self._closing = True
        self._held = []
        self._held_bytes = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class IncomingFrames:
    """The messages of one connection, from picows' callbacks to its session, in order.

    An async iterator (what :meth:`Sessions.run` consumes) that ends when the connection
    does. While more than :data:`MAX_QUEUED_FRAMES` wait, the socket stops being read,
    so a client cannot queue unbounded work on the server.
    """

    __slots__ = ("_direct", "_done", "_paused", "_queue", "_raw", "_waiter")

    def __init__(self, raw: asyncio.Transport) -> None:
        self._raw = raw
        self._queue: deque[str | bytes | Started] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._direct: FrameStarter | None = None
        self._done = False
        self._paused = False

    def handle_directly(self, start: FrameStarter | None) -> None:
        """While the session waits with nothing queued, pass each new message to
        ``start`` (:meth:`Dispatcher.begin`) at once instead of waking the session; what
        it gives back is queued for the session. None turns this off."""
        self._direct = start

    def put(self, message: str | bytes) -> None:
        start = self._direct
        if start is not None and self._waiter is not None and not self._queue:
            # The session is idle, so nothing of this connection runs before this frame.
            started = start(message)
            if started is None:
                return
            self._queue.append(started)
        else:
            self._queue.append(message)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if len(self._queue) > MAX_QUEUED_FRAMES and not self._paused:
            self._paused = True
            self._raw.pause_reading()

    def finish(self) -> None:
        """No more frames: the iterator ends once the queued ones are taken."""
        self._done = True
        self._queue.clear()  # the connection is gone; nobody would read the answers
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def __aiter__(self) -> IncomingFrames:
        return self

    async def __anext__(self) -> str | bytes | Started:
        queue = self._queue
        while not queue:
            if self._done:
                raise StopAsyncIteration
            self._waiter = waiter = asyncio.get_running_loop().create_future()
            await waiter
        message = queue.popleft()
        if self._paused and len(queue) <= RESUME_QUEUED_FRAMES:
            self._paused = False
            if not self._done:
                self._raw.resume_reading()
        return message


class ClientListener(WSListener):
    """picows' callbacks for one authenticated connection; runs its session as a task."""

    def __init__(self, node: WebSocketListener, principal: Principal) -> None:
        self._node = node
        self._principal = principal
        self._transport: PicowsTransport | None = None
        self._incoming: IncomingFrames | None = None
        self._fragments: list[bytes] | None = None
        self._fragments_text = False
        self._fragments_size = 0

    def on_ws_connected(self, transport: WSTransport) -> None:
        node = self._node
        self._transport = own = PicowsTransport(transport, node.coalescer)
        self._incoming = incoming = IncomingFrames(transport.underlying_transport)
        conn = Connection(new_id(), self._principal, own, node.send_queue_bytes)
        node.opened(self, conn, incoming)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        own = self._transport
        incoming = self._incoming
        assert own is not None and incoming is not None
        msg_type = frame.msg_type
        if msg_type is WSMsgType.TEXT and frame.fin and self._fragments is None:
            if own.is_open():
                try:
                    text = frame.get_payload_as_utf8_text()
                except UnicodeDecodeError:
                    own.close(CloseCode.INVALID_PAYLOAD, "invalid UTF-8 in a text frame")
                    return
                incoming.put(text)
            return
        if msg_type is WSMsgType.PONG:
            if own.awaiting_pong is not None and frame.get_payload_as_bytes() == own.awaiting_pong:
                own.awaiting_pong = None
            return
        if msg_type is WSMsgType.CLOSE:
            if not transport.is_close_frame_sent:
                code = cast(int, frame.get_close_code())
                # Echo the client's code (RFC 6455 §5.5.1). A close without one (picows
                # reads 0), or with a code that only reports a state locally (§7.4.1:
                # 1005, 1006, 1015), is answered with a plain 1000.
                if code in _NOT_SENDABLE or not code:
                    code = CloseCode.NORMAL
                send_close(transport, code, "")
            own.closing_handshake_done()
            return
        self._fragmented(own, incoming, frame, msg_type)

    def _fragmented(
        self, own: PicowsTransport, incoming: IncomingFrames, frame: WSFrame, msg_type: WSMsgType
    ) -> None:
        """Binary frames, and messages split into several frames (rare: slow path)."""
        if msg_type is WSMsgType.CONTINUATION:
            if self._fragments is None:
                own.close(CloseCode.PROTOCOL_ERROR, "continuation without a message")
                return
        elif msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            if self._fragments is not None:
                own.close(CloseCode.PROTOCOL_ERROR, "new message inside a fragmented one")
                return
            self._fragments = []
            self._fragments_text = msg_type is WSMsgType.TEXT
            self._fragments_size = 0
        else:  # PING: picows answered it already
            return
        assert self._fragments is not None
        self._fragments_size += frame.payload_size
        if self._fragments_size > self._node.max_payload:
            self._fragments = None
            own.close(CloseCode.MESSAGE_TOO_BIG, "message over WS_MAX_PAYLOAD")
            return
        self._fragments.append(frame.get_payload_as_bytes())
        if not frame.fin:
            return
        payload = b"".join(self._fragments)
        self._fragments = None
        if not own.is_open():
            return
        if not self._fragments_text:
            incoming.put(payload)
            return
        try:
            incoming.put(payload.decode("utf-8"))
        except UnicodeDecodeError:
            own.close(CloseCode.INVALID_PAYLOAD, "invalid UTF-8 in a text frame")

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self._transport is not None:
            self._transport.disconnected()
        if self._incoming is not None:
            self._incoming.finish()
        self._node.closed(self)


class PicowsPinger:
    """:class:`~chatsphere.gateway.heartbeat.Pinger` for :class:`PicowsTransport`.

    One ping is outstanding at a time (the heartbeat waits for its pong or its
    deadline), so a counter is a payload the peer cannot answer by accident with an
    unsolicited pong. No task, coroutine or future per ping.
    """

    __slots__ = ("_seq",)

    def __init__(self) -> None:
        self._seq = 0

    def send_ping(self, conn: Connection) -> None:
        transport = conn.transport
        assert isinstance(transport, PicowsTransport)
        self._seq = seq = (self._seq + 1) & 0xFFFF_FFFF
        data = seq.to_bytes(4, "big")
        transport.awaiting_pong = data
        transport.ws.send_ping(data)

    def answered(self, conn: Connection) -> bool:
        transport = conn.transport
        assert isinstance(transport, PicowsTransport)
        return transport.awaiting_pong is None


def _json_response(
    status: HTTPStatus, body: Any, extra_headers: dict[str, str] | None = None
) -> WSUpgradeResponseWithListener:
    data = orjson.dumps(body)
    headers = {"Content-Type": "application/json", "Server": "ChatSphere"}
    if extra_headers:
        headers.update(extra_headers)
    if status is HTTPStatus.OK:
        response = WSUpgradeResponse.create_ok_response(data, headers)
    else:
        response = WSUpgradeResponse.create_error_response(status, data, headers)
    return WSUpgradeResponseWithListener(response, None)


class WebSocketListener:
    """The node's WebSocket port: handshakes, connections and their sessions."""

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
        self.max_payload = max_payload
        self.send_queue_bytes = send_queue_bytes
        self._clients: dict[ClientListener, PicowsTransport] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.heartbeat = Heartbeat(heartbeat_interval, heartbeat_timeout, PicowsPinger())
        self.coalescer = WriteCoalescer()
        self.refused = 0

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        # picows logs every disconnect at INFO; a node's log is about the node.
        logging.getLogger("picows").setLevel(max(logging.WARNING, log.getEffectiveLevel()))
        self._server = await ws_create_server(
            self.route,
            host,
            port,
            max_frame_size=self.max_payload,  # a larger frame: 1009
            enable_auto_ping=False,  # our Heartbeat spreads pings; see heartbeat.py
            enable_auto_pong=True,
            read_buffer_init_size=READ_BUFFER_BYTES,
            websocket_handshake_timeout=10,
            # uvloop's own TCP transport, not aiofastnet's: 14 KiB of RSS per idle
            # connection against 19 (bench/PERFORMANCE.md), at the same cost per message.
            use_aiofastnet=False,
        )
        self.heartbeat.start()

    def route(self, request: WSUpgradeRequest) -> ClientListener | WSUpgradeResponseWithListener:
        """Answer an HTTP request on the WebSocket port: /health, or a client's upgrade."""
        parts = urlsplit(request.path.decode("latin-1"))
        if parts.path == "/health":
            return _json_response(HTTPStatus.OK, self._health())
        # "/" too: the seed's examples connect to ws://HOST:8080?userId=…
        if parts.path not in ("/ws", "/"):
            return _json_response(
                HTTPStatus.NOT_FOUND,
                {"error": {"code": "not_found", "message": "WebSocket endpoint is /ws"}},
            )
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return _json_response(
                HTTPStatus.UPGRADE_REQUIRED,
                {
                    "error": {
                        "code": "invalid_payload",
                        "message": "this is the WebSocket endpoint: send a WebSocket upgrade",
                    }
                },
                {"Upgrade": "websocket"},
            )
        # Connections count from on_ws_connected, which picows calls right after this
        # returns for a valid upgrade: the next handshake already sees this one.
        if len(self._clients) >= self._max_connections:
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
        return ClientListener(self, principal)

    def opened(self, client: ClientListener, conn: Connection, incoming: IncomingFrames) -> None:
        """A client completed its handshake: run its session until the socket goes."""
        transport = conn.transport
        assert isinstance(transport, PicowsTransport)
        self._clients[client] = transport
        task = asyncio.get_running_loop().create_task(self._serve(conn, incoming))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def closed(self, client: ClientListener) -> None:
        self._clients.pop(client, None)

    async def _serve(self, conn: Connection, incoming: IncomingFrames) -> None:
        try:
            await self._sessions.run(conn, incoming, self.heartbeat)
        except Exception:
            log.exception("session failed")
            conn.close(CloseCode.INTERNAL_ERROR, "internal error")

    async def shutdown(self, grace: float) -> None:
        """Stop accepting, close every connection with 1001, wait for sessions to finish."""
        if self._server is None:
            return
        self._server.close()
        await self._sessions.close_all(grace)
        await self.heartbeat.close()
        for transport in list(self._clients.values()):
            transport.ws.disconnect(False)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        with contextlib.suppress(Exception):
            await self._server.wait_closed()
        self._server = None
