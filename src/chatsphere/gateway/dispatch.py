"""Client frames → service calls → acks, errors and replays. No business rules here."""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from ..domain.events import RoomEvent
from ..domain.messages import Message
from ..errors import ChatError, ErrorCode
from ..ports.bus import room_channel
from ..protocol import frames as f
from ..protocol.codec import (
    FrameError,
    ack_frame,
    decode_frame,
    error_frame,
    event_data,
    server_frame,
)
from ..protocol.views import member_view, message_view, presence_view, room_view
from ..services.messages import MessageService, SendRequest, SendResult
from ..services.presence import PresenceService
from ..services.rooms import RoomService
from .connection import Connection
from .hub import Hub

log = logging.getLogger(__name__)


#: Sends of one connection handed to the store without waiting, at most. Past this, its
#: next frame waits until they have all committed, and the frames behind it queue (and
#: the socket's reads pause), so one client cannot queue unbounded work.
MAX_PENDING_SENDS = 64


class Refusal:
    """A frame refused while sends before it were still in flight: its error is written
    by :meth:`Dispatcher.handle_frame` once they have been answered, so answers keep the
    order of the frames."""

    __slots__ = ("error", "frame_id")

    def __init__(self, error: Exception, frame_id: str | int | None) -> None:
        self.error = error
        self.frame_id = frame_id


#: What :meth:`Dispatcher.begin` leaves for the connection's session task.
Started = f.Frame | Refusal


class Dispatcher:
    """Runs a connection's frames and writes their answers, in the order they came.

    Most frames are awaited one after another (:meth:`handle_frame`). A send whose checks
    the caches answer is handed to the store at once instead (:meth:`begin`) and
    acknowledged when it commits, so a client's sends pipeline: the store commits them in
    the order they were handed over, and their acks leave in that order. Any other frame
    waits until the connection's sends in flight have committed, so it sees them.
    """

    def __init__(
        self,
        hub: Hub,
        rooms: RoomService,
        messages: MessageService,
        presence: PresenceService,
        max_rooms_per_connection: int,
    ) -> None:
        self._hub = hub
        self._rooms = rooms
        self._messages = messages
        self._presence = presence
        self._max_rooms = max_rooms_per_connection
        # Duplicate lookups after a refused send: kept referenced until they finish.
        self._lookups: set[asyncio.Task[None]] = set()
        self.frames = 0
        self.errors = 0

    def begin(self, conn: Connection, raw: str | bytes) -> Started | None:
        """Decode a frame and start it without waiting; never raises.

        Returns what the session task is to finish with :meth:`handle_frame` once the
        connection's pending sends have been answered (:meth:`Connection.sends_settled`):
        a frame to run, or a refusal to write behind those answers. None when it was
        dealt with here: a send handed to the store, whose ack or error :meth:`_sent`
        writes, or a frame refused while no send was in flight.
        """
        self.frames += 1
        frame_id: str | int | None = None
        try:
            if not isinstance(raw, str):  # a binary frame
                raise FrameError(ErrorCode.INVALID_FRAME, "binary frames are not supported")
            frame = decode_frame(raw)
            frame_id = frame.id
            if type(frame) is not f.SendMessage or conn.pending_sends >= MAX_PENDING_SENDS:
                return frame
            draft = self._messages.draft_now(conn.user_id, _send_request(frame))
            if draft is None:  # it needs a store read first
                return frame
            posted = self._messages.post_nowait(draft)
        except Exception as exc:
            if conn.pending_sends:
                return Refusal(exc, frame_id)
            self._refuse(conn, exc, frame_id)
            return None
        conn.send_started()
        posted.add_done_callback(functools.partial(self._sent, conn, frame_id, draft))
        return None

    async def handle_frame(self, conn: Connection, started: Started) -> None:
        """Finish what :meth:`begin` gave back, and write its answer."""
        if isinstance(started, Refusal):
            self._refuse(conn, started.error, started.frame_id)
            return
        try:
            result = await self._run(conn, started)
        except Exception as exc:
            self._refuse(conn, exc, started.id)
            return
        if started.id is not None:
            conn.write(ack_frame(started.id, result))

    def _sent(
        self,
        conn: Connection,
        frame_id: str | int | None,
        draft: Message,
        posted: asyncio.Future[RoomEvent | None],
    ) -> None:
        """A send from :meth:`begin` has committed or failed: answer it."""
        refusal = None if posted.cancelled() else posted.exception()
        if (
            isinstance(refusal, ChatError)
            and refusal.code is ErrorCode.CONFLICT
            and draft.client_message_id is not None
        ):
            # Perhaps a retry of a stored send: finding the original takes a read.
            lookup = asyncio.get_running_loop().create_task(
                self._answer_duplicate(conn, frame_id, draft, refusal)
            )
            self._lookups.add(lookup)
            lookup.add_done_callback(self._lookups.discard)
            return
        try:
            if posted.cancelled():  # the loop is shutting down under it
                return
            if refusal is not None:
                self._refuse(conn, refusal, frame_id)
                return
            sent = self._messages.sent(draft, posted.result())
            answer = self._sent_answer(draft.room_id, draft.sender_id, sent)
            if frame_id is not None:
                conn.write(ack_frame(frame_id, answer))
        finally:
            # Whatever happened, the frames behind it must not wait for it forever.
            conn.send_finished()

    async def _answer_duplicate(
        self, conn: Connection, frame_id: str | int | None, draft: Message, refusal: ChatError
    ) -> None:
        try:
            sent = await self._messages.stored_duplicate(draft, refusal)
        except Exception as exc:
            self._refuse(conn, exc, frame_id)
        else:
            answer = self._sent_answer(draft.room_id, draft.sender_id, sent)
            if frame_id is not None:
                conn.write(ack_frame(frame_id, answer))
        finally:
            # Only now: the frames behind it wait for this answer to be written first.
            conn.send_finished()

    def _sent_answer(self, room_id: str, sender_id: str, sent: SendResult) -> Any:
        """A stored send's ack data, after telling presence the sender posted."""
        self._presence.message_sent(room_id, sender_id)
        if sent.frame is not None:
            # The event's own data, as encoded at commit: no second encoding.
            return event_data(sent.frame)
        body = message_view(sent.message)
        return {**body, "duplicate": True} if sent.duplicate else body

    def _refuse(self, conn: Connection, exc: BaseException, frame_id: str | int | None) -> None:
        """Write the error frame for a frame that failed with ``exc``."""
        self.errors += 1
        if isinstance(exc, FrameError):
            conn.write(error_frame(exc, exc.frame_id))
        elif isinstance(exc, ChatError):
            conn.write(error_frame(exc, frame_id))
        else:
            log.error("frame failed for %s", conn.user_id, exc_info=exc)
            conn.write(error_frame(ChatError(ErrorCode.INTERNAL_ERROR, "internal error"), frame_id))

    async def _run(self, conn: Connection, frame: f.Frame) -> Any:
        user = conn.user_id
        match frame:
            case f.SendMessage():
                sent = await self._messages.send(user, _send_request(frame))
                return self._sent_answer(frame.roomId, user, sent)
            case f.JoinRoom():
                return await self._join(conn, frame)
            case f.LeaveRoom():
                await self._rooms.remove_member(user, frame.roomId, user)
                await self._hub.unsubscribe(conn, room_channel(frame.roomId))
                return {"roomId": frame.roomId}
            case f.Typing():
                await self._presence.set_typing(user, frame.roomId, frame.isTyping)
                return None
            case f.UpdatePresence():
                presence = await self._presence.update(user, frame.status, frame.customStatus)
                return presence_view(presence)
            case f.AddReaction():
                return _view(await self._messages.add_reaction(user, frame.messageId, frame.emoji))
            case f.RemoveReaction():
                return _view(
                    await self._messages.remove_reaction(user, frame.messageId, frame.emoji)
                )
            case f.EditMessage():
                return _view(
                    await self._messages.edit_message(user, frame.messageId, frame.content)
                )
            case f.DeleteMessage():
                return _view(await self._messages.delete_message(user, frame.messageId))
            case f.MarkRead():
                seq = await self._messages.mark_read(user, frame.roomId, frame.seq)
                return {"roomId": frame.roomId, "seq": seq}
            case f.GetHistory():
                found = await self._messages.history(
                    user, frame.roomId, before=frame.before, after=frame.after, limit=frame.limit
                )
                return {"roomId": frame.roomId, "messages": [message_view(m) for m in found]}
            case f.Resume():
                return await self._resume(conn, frame)
            case f.Ping():
                conn.write(server_frame("pong", None))
                return None
        raise ChatError(ErrorCode.UNKNOWN_TYPE, "unsupported frame")  # pragma: no cover

    def _check_room_limit(self, conn: Connection, channel: str) -> None:
        if channel not in conn.channels and len(conn.channels) > self._max_rooms:
            raise ChatError(
                ErrorCode.TOO_MANY_ROOMS,
                f"a connection may listen to at most {self._max_rooms} rooms",
            )

    async def _join(self, conn: Connection, frame: f.JoinRoom) -> dict[str, Any]:
        channel = room_channel(frame.roomId)
        self._check_room_limit(conn, channel)
        room, member, event = await self._rooms.join_room(conn.user_id, frame.roomId)
        since = frame.sinceSeq
        if since is None and event is not None:
            since = event.seq - 1  # the joiner sees its own user_joined, and everything after
        body: dict[str, Any] = {"room": room_view(room), "membership": member_view(member)}
        if since is None or channel in conn.channels:
            await self._hub.subscribe(conn, channel)
            try:
                # The membership read above may predate a removal whose user_left (and
                # unsubscribe) went out before this connection subscribed: check again.
                await self._messages.check_joined(conn.user_id, frame.roomId)
            except ChatError:
                await self._hub.unsubscribe(conn, channel)
                raise
            body["lastSeq"] = room.last_seq
            return body
        body.update(await self._replay(conn, frame.roomId, since))
        return body

    async def _replay(self, conn: Connection, room_id: str, since: int) -> dict[str, Any]:
        """Subscribe first, then read the gap, then release live events newer than it."""
        channel = room_channel(room_id)
        try:
            # Refuse a non-member before subscribing: ephemeral deliveries (typing,
            # presence) are not held by the replay. The replay checks again after
            # subscribing, for a removal that commits in between.
            await self._messages.check_joined(conn.user_id, room_id)
        except ChatError as exc:
            await self._hub.unsubscribe(conn, channel)
            return {"replayed": 0, "lastSeq": since, "error": exc.to_dict()}
        conn.begin_replay(channel)
        last = since
        try:
            await self._hub.subscribe(conn, channel)
            events = await self._messages.replay(conn.user_id, room_id, since)
            half = conn.max_buffer // 2
            for event in events:
                # Paced: a gap may be far larger than the send buffer.
                if conn.transport.buffered() > half and not await conn.drained():
                    break
                if not conn.write(event.frame):
                    break
                last = event.seq
        except ChatError as exc:
            if exc.code is ErrorCode.RESUME_GAP_TOO_LARGE:
                conn.end_replay(channel, last)  # still a member: live events flow on
            else:
                conn.abort_replay(channel)
                await self._hub.unsubscribe(conn, channel)
            return {"replayed": 0, "lastSeq": last, "error": exc.to_dict()}
        except BaseException:
            conn.abort_replay(channel)
            await self._hub.unsubscribe(conn, channel)
            raise
        conn.end_replay(channel, last)
        return {"replayed": len(events), "lastSeq": last}

    async def _resume(self, conn: Connection, frame: f.Resume) -> dict[str, Any]:
        if len(frame.rooms) > self._max_rooms:
            raise ChatError(
                ErrorCode.TOO_MANY_ROOMS, f"resume at most {self._max_rooms} rooms at once"
            )
        results: dict[str, Any] = {}
        for room_id, last_seq in frame.rooms.items():
            try:  # the frame's own cap alone would let repeated resumes add rooms forever
                self._check_room_limit(conn, room_channel(room_id))
            except ChatError as exc:
                results[room_id] = {"replayed": 0, "lastSeq": last_seq, "error": exc.to_dict()}
                continue
            results[room_id] = await self._replay(conn, room_id, last_seq)
        return {"rooms": results}


def _send_request(frame: f.SendMessage) -> SendRequest:
    return SendRequest(
        frame.roomId,
        frame.content,
        frame.messageType,
        frame.clientMessageId,
        frame.replyTo,
        frame.metadata,
    )


def _view(message: Message) -> dict[str, Any]:
    return message_view(message)
