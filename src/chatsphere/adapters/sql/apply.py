"""Apply a batch of write commands in one transaction and number their events.

The long path (:meth:`BatchApplier.apply`) is synchronous: the store runs the whole
batch in its writer thread, so a transaction costs one thread hop rather than one per
statement. Each room touched by the batch has its counter read (and on PostgreSQL
locked, in a fixed order so concurrent nodes cannot deadlock) at the start. Commands
are checked against the state they target *before* taking a ``seq``, so a refused
command never leaves a gap.
Message inserts, the bulk of the traffic, are deferred and written with one
``executemany`` per table.

A batch of posts alone numbers its messages from the counters this node committed
last, when it knows every room's (see ``counters.py``), and writes them back guarded
instead of reading them first: the guard also requires the batch's posters to still be
joined members, which the long path reads (the service's caches hear of a removal only
once it has committed, so a post can be queued behind its sender's removal). Such a
batch needs no connection until it is stored: :meth:`BatchApplier.plan_known` numbers
it and returns its statements, which the store runs in the writer thread (SQLite) or
sends from the event loop (PostgreSQL, ``pipelined.py``). If a guard (or a unique key)
refuses them, the store runs the batch again the long way.

A new message is logged once: its ``messages`` row, numbered with the room's ``seq``,
is its entry in the room's event log, and ``room_events`` holds every other kind of
event (the store merges the two when it replays; see ``replay.py``).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, and_, delete, insert, select, update

from ...clock import isoformat
from ...domain.events import EventType, RoomEvent
from ...domain.messages import MessageStatus
from ...domain.rooms import MembershipState
from ...errors import ChatError, ErrorCode, message_not_found, not_a_member, room_not_found
from ...ports.store import (
    AddMember,
    AddReaction,
    ChangeRole,
    DeleteMessage,
    EditMessage,
    PostMessage,
    RemoveMember,
    RemoveReaction,
    UpdateRoom,
    WriteCommand,
)
from ...protocol.codec import room_event_frame
from ...protocol.views import member_view, message_view, room_view
from . import schema as t
from .bulk import BulkStatements, CounterMove, Cursor, Statement, StatementLog
from .codec import (
    dumps,
    member_row,
    message_row,
    room_from_row,
    search_text,
    settings_to_json,
    to_ms,
)
from .counters import RoomCounters

Outcome = RoomEvent | None | Exception


def _counter_moved(exc: Exception) -> bool:
    """Whether a driver's IntegrityError is a counter guard's NOT NULL violation."""
    return (
        getattr(exc, "sqlstate", None) == "23502"  # psycopg
        or getattr(exc, "sqlite_errorname", None) == "SQLITE_CONSTRAINT_NOTNULL"
    )


@dataclass(frozen=True, slots=True)
class KnownPlan:
    """A batch of posts numbered from known counters (:meth:`BatchApplier.plan_known`)."""

    outcomes: list[Outcome]
    statements: list[Statement]
    rooms: list[str]


@dataclass
class _RoomState:
    """A room's counters during a batch. ``member_count`` and ``max_participants`` are
    read (and written back) only on the long path: a batch of posts numbered from known
    counters neither needs nor writes them."""

    last_seq: int
    member_count: int = 0
    max_participants: int = 0


@dataclass
class _Pending:
    """Rows collected for the deferred bulk inserts of this batch."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    mentions: list[dict[str, Any]] = field(default_factory=list)
    replies: dict[str, int] = field(default_factory=dict)
    #: The posters per room of a batch numbered from known counters, whose counter
    #: guard also checks that they are still members.
    posters: dict[str, set[str]] = field(default_factory=dict)


def _scrubbed(kind: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """An event's data without the deleted message's content; None if it carries none.

    Only edits carry content in ``room_events``: the message itself is its own row,
    which the delete empties."""
    if kind != EventType.MESSAGE_EDITED.value:
        return None
    data.update(content={}, mentions=[])
    return data


def _mention_rows(
    room_id: str, seq: int, message_id: str, sender_id: str, mentions: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Rows of the mentions table (unread-mention counts); self-mentions do not count."""
    return [
        {"room_id": room_id, "user_id": user, "seq": seq, "message_id": message_id}
        for user in mentions
        if user != sender_id
    ]


def _speaker(command: WriteCommand) -> tuple[str, str] | None:
    """(room, user) of a command that adds a member's words to a room (a post, an edit, a
    reaction): the user must still be a joined member when it commits."""
    match command:
        case PostMessage():
            return command.message.room_id, command.message.sender_id
        case EditMessage():
            return command.room_id, command.editor_id
        case AddReaction():
            return command.room_id, command.user_id
    return None


def _client_key(command: PostMessage) -> tuple[str, str, str]:
    message = command.message
    return (message.room_id, message.sender_id, message.client_message_id or "")


def _duplicate() -> ChatError:
    # The caller looks the original up once this batch has committed.
    return ChatError(ErrorCode.CONFLICT, "clientMessageId already used by this sender here")


def _room_of(command: WriteCommand) -> str:
    if isinstance(command, PostMessage):
        return command.message.room_id
    if isinstance(command, AddMember):
        return command.member.room_id
    return command.room_id


class BatchApplier:
    def __init__(self, dialect: str) -> None:
        self._lock_rows = dialect == "postgresql"
        self._sql = BulkStatements(dialect)
        #: The counters this node committed last (one batch at a time: see counters.py);
        #: the store tells it when a batch committed or failed.
        self.counters = RoomCounters()

    def apply(self, conn: Connection, commands: list[WriteCommand]) -> list[Outcome]:
        """Apply ``commands`` in the open transaction of ``conn``; one outcome each.

        The long path: each room's counter is read first (on PostgreSQL locked). A batch
        of posts to rooms whose counters are known is planned instead (:meth:`plan_known`).
        """
        # The hot statements run on the driver's own connection (see bulk.py), inside
        # the transaction SQLAlchemy opened on it. A batch of posts alone (here a room's
        # first post on this node, or a refused plan) runs pipelined on PostgreSQL; other
        # commands read and write through SQLAlchemy as they go, which a pipeline would
        # not suit.
        raw = conn.connection.driver_connection
        posts_only = all(isinstance(c, PostMessage) for c in commands)
        rooms = sorted({_room_of(c) for c in commands})
        wanted = {
            _client_key(c)
            for c in commands
            if isinstance(c, PostMessage) and c.message.client_message_id
        }
        speakers = {pair for c in commands if (pair := _speaker(c)) is not None}
        with self._sql.pipeline(raw) if posts_only else nullcontext():
            cursor = raw.cursor()  # type: ignore[union-attr]
            try:
                read = self._sql.batch_state(
                    raw, rooms, sorted(wanted), sorted(speakers), lock=self._lock_rows
                )
                states = {
                    room_id: _RoomState(
                        last_seq,
                        member_count,
                        orjson.loads(settings).get("max_participants", 10_000),
                    )
                    for room_id, last_seq, member_count, settings in read.counters
                }
                outcomes = self._apply(
                    conn, cursor, commands, states, read.taken, None, set(read.joined)
                )
                if posts_only:
                    self._sql.commit_in_pipeline(cursor)
            finally:
                cursor.close()
        return outcomes

    def plan_known(self, commands: list[WriteCommand]) -> KnownPlan | None:
        """Number a batch of posts alone from the counters this node knows, without a
        connection: its outcomes and the statements that store it, to be run in one
        transaction (:meth:`store_plan`, or from the event loop: pipelined.py). None
        unless every command is a post and every room's counter is known. The counters
        are staged: tell them how the commit ended (``counters.committed()``, or
        :meth:`refused` / ``discard()``). If the statements fail with an integrity error
        (a guard, or a client id stored earlier), nothing of the batch is kept: run it
        again with :meth:`apply`, which also tells which command was the duplicate.
        """
        if not all(isinstance(c, PostMessage) for c in commands):
            return None
        rooms = sorted({_room_of(c) for c in commands})
        known = self.counters.known(rooms)
        if known is None:
            return None
        states = {room_id: _RoomState(last_seq) for room_id, last_seq in known.items()}
        log = StatementLog()
        # A client id stored by an earlier batch is refused by its unique key, which
        # voids the transaction; the long path then reports it.
        outcomes = self._apply(None, log, commands, states, set(), known, None)
        return KnownPlan(outcomes, log.statements, rooms)

    @staticmethod
    def store_plan(conn: Connection, plan: KnownPlan) -> None:
        """Run a plan's statements in the open transaction of ``conn`` (SQLite's writer
        thread; PostgreSQL sends them from the loop, pipelined.py)."""
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            for statement in plan.statements:
                run = cursor.executemany if statement.many else cursor.execute
                run(statement.sql, statement.params)
        finally:
            cursor.close()

    def refused(self, exc: Exception, rooms: list[str]) -> None:
        """A batch numbered from known counters was refused by ``exc`` (an integrity
        error): hold ``rooms`` off if a guard failed (a counter had moved, or a poster is
        no longer a member); after a duplicate client id the counters this node knows are
        still the stored ones."""
        if _counter_moved(exc):
            self.counters.refused(rooms)
        else:
            self.counters.discard()

    def _apply(
        self,
        conn: Connection | None,
        cursor: Cursor,
        commands: list[WriteCommand],
        states: dict[str, _RoomState],
        taken: set[tuple[str, str, str]],
        known: dict[str, int] | None,
        joined: set[tuple[str, str]] | None,
    ) -> list[Outcome]:
        """Number ``commands`` against ``states`` and write them through ``cursor``;
        ``taken`` holds the client ids stored already, ``known`` the counters a planned
        batch numbers from (its writes are then guarded), ``joined`` the (room, user) pairs
        of the batch's speakers (:func:`_speaker`) that are members, kept up to date through
        the batch (None: not checked)."""
        pending = _Pending()
        outcomes: list[Outcome] = []
        for command in commands:
            state = states.get(_room_of(command))
            if state is None:
                outcomes.append(room_not_found(_room_of(command)))
                continue
            if joined is not None and (speaker := _speaker(command)) and speaker not in joined:
                outcomes.append(not_a_member(speaker[0]))
                continue
            if isinstance(command, PostMessage):
                if command.message.client_message_id:
                    key = _client_key(command)
                    if key in taken:
                        outcomes.append(_duplicate())
                        continue
                    taken.add(key)  # a second copy later in this same batch is one too
                if known is not None:
                    room_posters = pending.posters.get(command.message.room_id)
                    if room_posters is None:
                        room_posters = pending.posters[command.message.room_id] = set()
                    room_posters.add(command.message.sender_id)
            try:
                outcomes.append(self._apply_one(conn, command, state, pending))
            except ChatError as exc:
                outcomes.append(exc)
                continue
            if joined is None:
                continue
            if isinstance(command, RemoveMember):
                joined.discard((command.room_id, command.user_id))
            elif isinstance(command, AddMember) and command.member.state is MembershipState.JOINED:
                joined.add((command.member.room_id, command.member.user_id))
        self._flush(cursor, pending, states, known)
        self.counters.stage({room_id: state.last_seq for room_id, state in states.items()})
        return outcomes

    def _flush(
        self,
        cursor: Cursor,
        pending: _Pending,
        states: dict[str, _RoomState],
        known: dict[str, int] | None,
    ) -> None:
        if known is not None:
            # Guarded, and first: a stale counter fails the batch before its rows are sent.
            moves = [
                CounterMove(
                    room_id, known[room_id], state.last_seq, sorted(pending.posters[room_id])
                )
                for room_id, state in states.items()
                if state.last_seq != known[room_id]
            ]
            if moves:
                self._sql.advance_counters(cursor, moves)
        if pending.messages:
            self._sql.insert_messages(cursor, pending.messages)
        if pending.mentions:
            self._sql.insert_mentions(cursor, pending.mentions)
        if pending.replies:
            self._sql.add_replies(cursor, pending.replies)
        if pending.events:
            self._sql.insert_events(cursor, pending.events)
        if known is None and (pending.events or pending.messages):
            self._sql.write_counters(
                cursor, [(room, s.last_seq, s.member_count) for room, s in states.items()]
            )

    def _event(
        self,
        pending: _Pending,
        state: _RoomState,
        room_id: str,
        kind: EventType,
        data: dict[str, Any],
        at: datetime,
        actor_id: str | None,
        message_id: str | None = None,
        *,
        logged: bool = True,
    ) -> RoomEvent:
        """Number the room's next event; unless ``logged`` is false (a new message,
        whose own row is its log entry), queue its ``room_events`` row."""
        state.last_seq += 1
        seq = state.last_seq
        data_json = orjson.dumps(data)
        if logged:
            pending.events.append(
                {
                    "room_id": room_id,
                    "seq": seq,
                    "type": kind.value,
                    "data": data_json.decode(),
                    "actor_id": actor_id,
                    "message_id": message_id,
                    "created_at": to_ms(at),
                }
            )
        return RoomEvent(
            room_id=room_id,
            seq=seq,
            type=kind,
            data=data,
            frame=room_event_frame(kind.value, room_id, seq, data_json),
            actor_id=actor_id,
            message_id=message_id,
        )

    def _post(self, command: PostMessage, state: _RoomState, pending: _Pending) -> RoomEvent:
        message = command.message
        # The draft's seq is 0; patch the view and row rather than copy the dataclass
        # (this runs once per message on the hot path).
        seq = state.last_seq + 1
        view = message_view(message)
        view["seq"] = seq
        event = self._event(
            pending,
            state,
            message.room_id,
            EventType.NEW_MESSAGE,
            view,
            message.created_at,
            message.sender_id,
            message.id,
            logged=False,
        )
        row = message_row(message)
        row["seq"] = seq
        pending.messages.append(row)
        pending.mentions.extend(
            _mention_rows(message.room_id, seq, message.id, message.sender_id, message.mentions)
        )
        if message.reply_to:
            pending.replies[message.reply_to] = pending.replies.get(message.reply_to, 0) + 1
        return event

    def _apply_one(
        self, conn: Connection | None, command: WriteCommand, state: _RoomState, pending: _Pending
    ) -> RoomEvent | None:
        if isinstance(command, PostMessage):
            return self._post(command, state, pending)
        if conn is None:  # only batches of posts are numbered without a connection
            raise TypeError(f"{type(command).__name__} needs the transaction's connection")
        match command:
            case EditMessage():
                return self._edit(conn, command, state, pending)
            case DeleteMessage():
                return self._delete(conn, command, state, pending)
            case AddReaction() | RemoveReaction():
                return self._react(conn, command, state, pending)
            case AddMember():
                return self._add_member(conn, command, state, pending)
            case RemoveMember():
                return self._remove_member(conn, command, state, pending)
            case ChangeRole():
                result = conn.execute(
                    update(t.memberships)
                    .where(
                        and_(
                            t.memberships.c.room_id == command.room_id,
                            t.memberships.c.user_id == command.user_id,
                        )
                    )
                    .values(role=command.role.value)
                )
                if result.rowcount == 0:
                    raise ChatError(ErrorCode.NOT_A_MEMBER, f"{command.user_id!r} is not a member")
                return self._event(
                    pending,
                    state,
                    command.room_id,
                    EventType.ROLE_CHANGED,
                    {
                        "userId": command.user_id,
                        "role": command.role.value,
                        "changedBy": command.actor_id,
                    },
                    command.at,
                    command.actor_id,
                )
            case UpdateRoom():
                return self._update_room(conn, command, state, pending)
        raise TypeError(f"unknown write command {command!r}")  # pragma: no cover

    def _live_message(self, conn: Connection, room_id: str, message_id: str) -> Any:
        row = (
            conn.execute(
                select(
                    t.messages.c.status,
                    t.messages.c.content,
                    t.messages.c.seq,
                    t.messages.c.sender_id,
                    t.messages.c.reply_to,
                ).where(and_(t.messages.c.id == message_id, t.messages.c.room_id == room_id))
            )
        ).first()
        if row is None:
            raise message_not_found(message_id)
        return row

    def _edit(
        self, conn: Connection, command: EditMessage, state: _RoomState, pending: _Pending
    ) -> RoomEvent:
        row = self._live_message(conn, command.room_id, command.message_id)
        if row.status == MessageStatus.DELETED.value:
            raise ChatError(ErrorCode.MESSAGE_DELETED, "the message was deleted")
        at = to_ms(command.at)
        conn.execute(
            insert(t.message_edits).values(
                message_id=command.message_id,
                content=row.content,
                edited_at=at,
                edited_by=command.editor_id,
            )
        )
        conn.execute(
            update(t.messages)
            .where(t.messages.c.id == command.message_id)
            .values(
                content=dumps(command.content),
                search_text=search_text(command.content),
                status=MessageStatus.EDITED.value,
                updated_at=at,
                mentions=dumps(command.mentions),
            )
        )
        # Mentions follow the text: an edit can add or drop them.
        conn.execute(delete(t.mentions).where(t.mentions.c.message_id == command.message_id))
        rows = _mention_rows(
            command.room_id, row.seq, command.message_id, row.sender_id, command.mentions
        )
        if rows:
            conn.execute(insert(t.mentions), rows)
        return self._event(
            pending,
            state,
            command.room_id,
            EventType.MESSAGE_EDITED,
            {
                "messageId": command.message_id,
                "content": command.content,
                "mentions": list(command.mentions),
                "editedBy": command.editor_id,
                "updatedAt": isoformat(command.at),
            },
            command.at,
            command.editor_id,
            command.message_id,
        )

    def _delete(
        self, conn: Connection, command: DeleteMessage, state: _RoomState, pending: _Pending
    ) -> RoomEvent | None:
        row = self._live_message(conn, command.room_id, command.message_id)
        if row.status == MessageStatus.DELETED.value:
            return None
        at = to_ms(command.at)
        conn.execute(
            update(t.messages)
            .where(t.messages.c.id == command.message_id)
            .values(
                content="{}",
                metadata="{}",
                search_text=None,
                status=MessageStatus.DELETED.value,
                updated_at=at,
                mentions="[]",
            )
        )
        conn.execute(delete(t.reactions).where(t.reactions.c.message_id == command.message_id))
        conn.execute(delete(t.mentions).where(t.mentions.c.message_id == command.message_id))
        conn.execute(
            delete(t.message_edits).where(t.message_edits.c.message_id == command.message_id)
        )
        if row.reply_to is not None:
            conn.execute(
                update(t.messages)
                .where(and_(t.messages.c.id == row.reply_to, t.messages.c.reply_count > 0))
                .values(reply_count=t.messages.c.reply_count - 1)
            )
        self._scrub_events(conn, command.message_id, pending)
        return self._event(
            pending,
            state,
            command.room_id,
            EventType.MESSAGE_DELETED,
            {
                "messageId": command.message_id,
                "deletedBy": command.actor_id,
                "deletedAt": isoformat(command.at),
            },
            command.at,
            command.actor_id,
            command.message_id,
        )

    def _scrub_events(self, conn: Connection, message_id: str, pending: _Pending) -> None:
        """Remove a deleted message's content from the event log, so resume can't replay it."""
        rows = (
            conn.execute(
                select(
                    t.room_events.c.room_id,
                    t.room_events.c.seq,
                    t.room_events.c.type,
                    t.room_events.c.data,
                ).where(t.room_events.c.message_id == message_id)
            )
        ).all()
        for row in rows:
            data = _scrubbed(row.type, orjson.loads(row.data))
            if data is None:
                continue
            conn.execute(
                update(t.room_events)
                .where(and_(t.room_events.c.room_id == row.room_id, t.room_events.c.seq == row.seq))
                .values(data=dumps(data))
            )
        # Events of this same batch (an edit committed with the delete) are not in the
        # table yet; scrub them before they are written.
        for event in pending.events:
            if event["message_id"] == message_id:
                data = _scrubbed(event["type"], orjson.loads(event["data"]))
                if data is not None:
                    event["data"] = dumps(data)

    def _react(
        self,
        conn: Connection,
        command: AddReaction | RemoveReaction,
        state: _RoomState,
        pending: _Pending,
    ) -> RoomEvent | None:
        row = self._live_message(conn, command.room_id, command.message_id)
        if row.status == MessageStatus.DELETED.value:
            raise ChatError(ErrorCode.MESSAGE_DELETED, "the message was deleted")
        key = and_(
            t.reactions.c.message_id == command.message_id,
            t.reactions.c.user_id == command.user_id,
            t.reactions.c.emoji == command.emoji,
        )
        if isinstance(command, AddReaction):
            if (conn.execute(select(t.reactions.c.emoji).where(key))).first():
                return None
            conn.execute(
                insert(t.reactions).values(
                    message_id=command.message_id,
                    user_id=command.user_id,
                    emoji=command.emoji,
                    created_at=to_ms(command.at),
                )
            )
            kind = EventType.REACTION_ADDED
        else:
            if (conn.execute(delete(t.reactions).where(key))).rowcount == 0:
                return None
            kind = EventType.REACTION_REMOVED
        return self._event(
            pending,
            state,
            command.room_id,
            kind,
            {"messageId": command.message_id, "emoji": command.emoji, "userId": command.user_id},
            command.at,
            command.user_id,
            command.message_id,
        )

    def _add_member(
        self, conn: Connection, command: AddMember, state: _RoomState, pending: _Pending
    ) -> RoomEvent | None:
        member = command.member
        key = and_(
            t.memberships.c.room_id == member.room_id, t.memberships.c.user_id == member.user_id
        )
        existing = (conn.execute(select(t.memberships.c.state).where(key))).first()
        joining = member.state is MembershipState.JOINED
        if existing is not None and (existing.state == MembershipState.JOINED.value or not joining):
            return None
        if joining and state.member_count >= state.max_participants:
            raise ChatError(
                ErrorCode.ROOM_FULL, "the room is full", {"maxParticipants": state.max_participants}
            )
        if existing is None:
            conn.execute(insert(t.memberships).values(member_row(member)))
        else:
            conn.execute(
                update(t.memberships)
                .where(key)
                .values(state=MembershipState.JOINED.value, joined_at=to_ms(member.joined_at))
            )
        if joining:
            state.member_count += 1
        kind = EventType.USER_JOINED if joining else EventType.USER_INVITED
        data = member_view(member)
        if not joining:
            data["invitedBy"] = command.actor_id
        return self._event(
            pending, state, member.room_id, kind, data, member.joined_at, command.actor_id
        )

    def _remove_member(
        self, conn: Connection, command: RemoveMember, state: _RoomState, pending: _Pending
    ) -> RoomEvent | None:
        key = and_(
            t.memberships.c.room_id == command.room_id, t.memberships.c.user_id == command.user_id
        )
        existing = (conn.execute(select(t.memberships.c.state).where(key))).first()
        if existing is None:
            return None
        conn.execute(delete(t.memberships).where(key))
        if existing.state == MembershipState.JOINED.value:
            state.member_count -= 1
        reason = "left" if command.actor_id == command.user_id else "removed"
        return self._event(
            pending,
            state,
            command.room_id,
            EventType.USER_LEFT,
            {"userId": command.user_id, "reason": reason, "removedBy": command.actor_id},
            command.at,
            command.actor_id,
        )

    def _update_room(
        self, conn: Connection, command: UpdateRoom, state: _RoomState, pending: _Pending
    ) -> RoomEvent:
        values: dict[str, Any] = {"updated_at": to_ms(command.at)}
        if command.name is not None:
            values["name"] = command.name
        if command.description is not None:
            values["description"] = command.description
        if command.metadata is not None:
            values["metadata"] = dumps(command.metadata)
        if command.settings is not None:
            values["settings"] = settings_to_json(command.settings)
            values["is_private"] = command.settings.is_private
            state.max_participants = command.settings.max_participants
        conn.execute(update(t.rooms).where(t.rooms.c.id == command.room_id).values(values))
        row = (
            (conn.execute(select(t.rooms).where(t.rooms.c.id == command.room_id))).mappings().one()
        )
        room = replace(
            room_from_row(row), last_seq=state.last_seq + 1, member_count=state.member_count
        )
        return self._event(
            pending,
            state,
            command.room_id,
            EventType.ROOM_UPDATED,
            {"room": room_view(room), "changedBy": command.actor_id},
            command.at,
            command.actor_id,
        )
