"""Async Python SDK for the ChatSphere wire protocol.

::

    async with ChatClient("ws://localhost:8080/ws", token=token) as chat:
        await chat.join_room(room_id)
        await chat.send_message(room_id, "hello")
        async for event in chat.events():
            ...

Delivery guarantees on the client side:

* every ``send_message`` carries a ``clientMessageId``; if the connection drops
  before the ack, the send is retried after reconnecting with the same id, so the
  message is stored once whatever happens;
* the client remembers the last ``seq`` it saw per room, reconnects with backoff and
  jitter when the server closes with a "reconnect" code (or the network drops), and
  sends ``resume`` so missed events are replayed in order;
* room events already seen (``seq`` at or below the last one) are not passed on
  again, so the application sees each event once;
* when more was missed than the server replays (``resume_gap_too_large``), the
  gap's messages are paged from history and passed on in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from .ids import new_id
from .protocol.closecodes import should_reconnect

log = logging.getLogger(__name__)

Event = dict[str, Any]


class ClientError(Exception):
    """The server refused a request (``code`` is the stable error code)."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or {}


class ConnectionLost(ClientError):
    def __init__(self, message: str = "connection lost") -> None:
        super().__init__("connection_lost", message)


class ChatClient:
    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        user_id: str | None = None,
        reconnect: bool = True,
        max_backoff: float = 10.0,
        request_timeout: float = 30.0,
        max_size: int | None = 4 * 1024 * 1024,
    ) -> None:
        params = {"token": token} if token else ({"userId": user_id} if user_id else {})
        self.url = f"{url}?{urlencode(params)}" if params else url
        self.reconnect = reconnect
        self.max_backoff = max_backoff
        self.request_timeout = request_timeout
        self.max_size = max_size
        self.user_id: str | None = user_id
        self.session_id: str | None = None
        self.last_seq: dict[str, int] = {}
        self.connections = 0
        self.close_code: int | None = None
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._listeners: list[tuple[str, Callable[[Event], None]]] = []
        self._reader: asyncio.Task[None] | None = None
        self._online = asyncio.Event()
        self._closed = False
        self._connected_frame: asyncio.Future[Event] | None = None

    # -- lifecycle -------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the connection and wait for the server's ``connected`` frame."""
        await self._open()
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        self._connected_frame = loop.create_future()
        self._ws = await connect(
            self.url,
            max_size=self.max_size,
            compression=None,
            ping_interval=None,
            open_timeout=10,
            close_timeout=2,
        )
        self.connections += 1
        first = orjson.loads(await asyncio.wait_for(self._ws.recv(), 10))
        if first.get("type") != "connected":
            raise ClientError("protocol_error", f"expected 'connected', got {first!r}")
        self.user_id = first["data"]["userId"]
        self.session_id = first["data"]["sessionId"]
        self._online.set()

    async def close(self) -> None:
        self._closed = True
        self._online.clear()
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        self._fail_pending(ConnectionLost("client closed"))

    async def drop(self) -> None:
        """Close the socket abruptly (as a network failure would); reconnect follows."""
        if self._ws is not None:
            self._ws.transport.abort()

    # -- reading -----------------------------------------------------------------------
    async def _read_loop(self) -> None:
        backoff = 0.1
        while not self._closed:
            ws = self._ws
            assert ws is not None
            try:
                async for raw in ws:
                    self._on_frame(orjson.loads(raw))
            except ConnectionClosed:
                pass
            self._online.clear()
            self.close_code = ws.close_code
            self._fail_pending(ConnectionLost(f"closed with {ws.close_code}"))
            if self._closed or not self.reconnect:
                break
            if ws.close_code is not None and not should_reconnect(ws.close_code):
                log.warning("server closed with %s; not reconnecting", ws.close_code)
                break
            while not self._closed:
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
                backoff = min(self.max_backoff, backoff * 2)
                try:
                    await self._open()
                # InvalidHandshake: a refusal (InvalidStatus) or a handshake cut off midway
                # (InvalidMessage, e.g. the node died between accept and answer).
                except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError) as exc:
                    log.debug("reconnect failed: %s", exc)
                    continue
                backoff = 0.1
                try:
                    await self._resume_after_reconnect()
                except (ClientError, ConnectionClosed):
                    continue
                break
        self._closed = True

    async def _resume_after_reconnect(self) -> None:
        ws = self._ws
        assert ws is not None
        if not self.last_seq:
            return
        frame_id = next(self._ids)
        await ws.send(
            orjson.dumps({"type": "resume", "id": frame_id, "rooms": self.last_seq}).decode()
        )
        # Read inline until the ack: replayed events arrive before it. Room events wait
        # for the ack too: a room whose gap was too large gets live events before it.
        early: list[Event] = []
        while True:
            msg = orjson.loads(await ws.recv())
            if msg.get("id") == frame_id and msg.get("type") in ("ack", "error"):
                if msg["type"] == "error":
                    raise ClientError(**_error_args(msg))
                break
            if isinstance(msg.get("seq"), int):
                early.append(msg)
            else:
                self._on_frame(msg)
        gaps = {
            room_id
            for room_id, result in msg["data"]["rooms"].items()
            if (result.get("error") or {}).get("code") == "resume_gap_too_large"
        }
        for event in early:
            if event.get("roomId") not in gaps:
                self._on_frame(event)
        for room_id in gaps:
            await self._page_gap(ws, room_id, [e for e in early if e.get("roomId") == room_id])

    async def _page_gap(self, ws: ClientConnection, room_id: str, live: list[Event]) -> None:
        """More was missed than the server replays: page the gap from history instead.

        The gap's messages reach the app as ``new_message`` events in seq order, merged
        with the live events that arrive meanwhile. Other events in the gap (edits,
        reactions, joins) are not replayed one by one: history shows messages as they
        stand now.
        """
        after = self.last_seq.get(room_id, 0)
        recovered = list(live)
        while True:
            frame_id = next(self._ids)
            page = {"type": "get_history", "id": frame_id, "roomId": room_id, "after": after}
            await ws.send(orjson.dumps({**page, "limit": 200}).decode())
            while True:
                msg = orjson.loads(await ws.recv())
                if msg.get("id") == frame_id and msg.get("type") in ("ack", "error"):
                    break
                if msg.get("roomId") == room_id and isinstance(msg.get("seq"), int):
                    recovered.append(msg)  # live, after the gap: passed on in order below
                else:
                    self._on_frame(msg)
            if msg["type"] == "error":
                log.warning("could not page the gap in %s: %s", room_id, msg.get("error"))
                break
            messages = msg["data"]["messages"]
            if not messages:
                break
            recovered.extend(
                {"type": "new_message", "roomId": room_id, "seq": m["seq"], "data": m}
                for m in messages
            )
            after = messages[-1]["seq"]
        for event in sorted(recovered, key=lambda e: int(e["seq"])):
            self._on_frame(event)  # drops the second of two events with one seq

    def _on_frame(self, msg: Event) -> None:
        kind = msg.get("type")
        if kind in ("ack", "error") and "id" in msg:
            future = self._pending.pop(msg["id"], None)
            if future is not None and not future.done():
                if kind == "ack":
                    future.set_result(msg.get("data"))
                else:
                    future.set_exception(ClientError(**_error_args(msg)))
                return
        seq = msg.get("seq")
        room = msg.get("roomId")
        if isinstance(seq, int) and isinstance(room, str):
            if seq <= self.last_seq.get(room, 0):
                return  # already seen (replay overlap): each event reaches the app once
            self.last_seq[room] = seq
        for kind_filter, callback in self._listeners:
            if kind_filter in ("*", kind):
                callback(msg)
        self._events.put_nowait(msg)

    def _fail_pending(self, error: Exception) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    # -- events ------------------------------------------------------------------------
    def on(self, event_type: str, callback: Callable[[Event], None]) -> None:
        """Call ``callback(frame)`` for each server event of ``event_type`` (``"*"``: all)."""
        self._listeners.append((event_type, callback))

    async def events(self) -> AsyncIterator[Event]:
        while True:
            yield await self._events.get()

    async def next_event(
        self,
        event_type: str | None = None,
        timeout: float = 5.0,
        where: Callable[[Event], bool] | None = None,
    ) -> Event:
        """The next event (of ``event_type``, matching ``where``); others are discarded."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self._events.get()
                if (event_type is None or event["type"] == event_type) and (
                    where is None or where(event)
                ):
                    return event

    def drain_events(self) -> list[Event]:
        drained = []
        while not self._events.empty():
            drained.append(self._events.get_nowait())
        return drained

    # -- requests ------------------------------------------------------------------------
    async def request(self, frame_type: str, **fields: Any) -> Any:
        """Send a frame with an ``id`` and return the ack's ``data`` (or raise ClientError)."""
        await asyncio.wait_for(self._online.wait(), self.request_timeout)
        ws = self._ws
        assert ws is not None
        frame_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[frame_id] = future
        body = {"type": frame_type, "id": frame_id}
        body.update({k: v for k, v in fields.items() if v is not None})
        try:
            await ws.send(orjson.dumps(body).decode())
        except ConnectionClosed:
            self._pending.pop(frame_id, None)
            raise ConnectionLost() from None
        return await asyncio.wait_for(future, self.request_timeout)

    async def send_raw(self, data: str | bytes) -> None:
        assert self._ws is not None
        await self._ws.send(data)

    async def join_room(self, room_id: str, since_seq: int | None = None) -> Any:
        result = await self.request("join_room", roomId=room_id, sinceSeq=since_seq)
        self.last_seq.setdefault(room_id, result.get("lastSeq", 0))
        return result

    async def leave_room(self, room_id: str) -> Any:
        result = await self.request("leave_room", roomId=room_id)
        self.last_seq.pop(room_id, None)
        return result

    async def send_message(
        self,
        room_id: str,
        content: str | dict[str, Any],
        *,
        message_type: str | None = None,
        reply_to: str | None = None,
        metadata: dict[str, Any] | None = None,
        client_message_id: str | None = None,
        retry: bool = True,
    ) -> Any:
        """Send and return the stored message. Retried across reconnects, stored once."""
        body = {"text": content} if isinstance(content, str) else content
        # Time-ordered, so a sender's ids land at the end of the store's unique key
        # (room, sender, client id) instead of at random places in it.
        cmid = client_message_id or new_id()
        while True:
            try:
                return await self.request(
                    "send_message",
                    roomId=room_id,
                    content=body,
                    messageType=message_type,
                    replyTo=reply_to,
                    metadata=metadata,
                    clientMessageId=cmid,
                )
            except ConnectionLost:
                if not retry or self._closed:
                    raise
            except TimeoutError:
                if not retry or self._closed:
                    raise

    async def edit_message(self, message_id: str, content: str | dict[str, Any]) -> Any:
        body = {"text": content} if isinstance(content, str) else content
        return await self.request("edit_message", messageId=message_id, content=body)

    async def delete_message(self, message_id: str) -> Any:
        return await self.request("delete_message", messageId=message_id)

    async def add_reaction(self, message_id: str, emoji: str) -> Any:
        return await self.request("add_reaction", messageId=message_id, emoji=emoji)

    async def remove_reaction(self, message_id: str, emoji: str) -> Any:
        return await self.request("remove_reaction", messageId=message_id, emoji=emoji)

    async def typing(self, room_id: str, is_typing: bool = True) -> Any:
        return await self.request("typing", roomId=room_id, isTyping=is_typing)

    async def update_presence(self, status: str, custom_status: str | None = None) -> Any:
        return await self.request("update_presence", status=status, customStatus=custom_status)

    async def mark_read(self, room_id: str, seq: int) -> Any:
        return await self.request("mark_read", roomId=room_id, seq=seq)

    async def get_history(
        self,
        room_id: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        result = await self.request(
            "get_history", roomId=room_id, before=before, after=after, limit=limit
        )
        return list(result["messages"])

    async def resume(self, rooms: dict[str, int] | None = None) -> Any:
        return await self.request("resume", rooms=rooms if rooms is not None else self.last_seq)

    async def ping(self) -> Any:
        return await self.request("ping")


def _error_args(msg: Event) -> dict[str, Any]:
    error = msg.get("error") or {}
    return {
        "code": str(error.get("code", "unknown")),
        "message": str(error.get("message", "")),
        "details": error.get("details"),
    }
