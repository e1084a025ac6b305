"""The statements of the message hot path, as plain DBAPI SQL.

Posting a message touches the same five statements every batch: read the rooms'
counters, look up stored client ids, insert messages, mentions and events, and
write the counters back. Through SQLAlchemy Core each execution costs ~0.3 ms of
Python (cache key, parameter processing) against tens of microseconds inside the
database, so a small batch paid mostly for the toolkit. Here the SQL text is built
once from the table definitions in :mod:`.schema` and run on the driver's own
cursor, inside the transaction SQLAlchemy opened on the same connection; a batch
planned from known counters is recorded (:class:`StatementLog`) and run later, on
PostgreSQL from the event loop on a connection of its own (``pipelined.py``). Rare
commands (edits, deletes, membership) stay on SQLAlchemy Core in :mod:`.apply`.
"""

# SQL text here is assembled from the table definitions and placeholders only; every
# value travels as a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Protocol

import orjson
from sqlalchemy import Table

from ...domain.rooms import MembershipState
from . import schema as t


class PipelineExitNoise(logging.Filter):
    """Drops psycopg's warning about a second error met while leaving a pipeline.

    When a statement of a batch fails (a counter guard, a retried client id: see
    counters.py), psycopg may raise that error inside the pipeline block; leaving the
    block, it then meets the aborted pipeline again and logs "error ignored terminating
    <Pipeline>" at WARNING. The first error still reaches the writer, which runs the
    batch again the long way, so the line would only report an expected event as a
    problem (and operators, like the crash test, treat a WARNING in the log as one).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno == logging.WARNING
            and isinstance(record.msg, str)
            and record.msg.startswith("error ignored terminating")
        )


logging.getLogger("psycopg").addFilter(PipelineExitNoise())


#: The stored state of a joined member.
JOINED = MembershipState.JOINED.value


@dataclass(frozen=True, slots=True)
class CounterMove:
    """A room's counter moved by a batch numbered from known counters
    (:meth:`BulkStatements.advance_counters`)."""

    room_id: str
    expected: int
    new: int
    #: The batch's posters in the room (distinct), who must still be joined members.
    posters: list[str]


@dataclass(frozen=True, slots=True)
class BatchState:
    """What a batch on the long path reads first (:meth:`BulkStatements.batch_state`)."""

    #: (room id, last_seq, member_count, settings JSON) per room, in id order.
    counters: list[tuple[Any, ...]]
    #: The batch's (room, sender, client id) triples stored already.
    taken: set[tuple[str, str, str]]
    #: The batch's (room, speaker) pairs that are joined members.
    joined: set[tuple[str, str]]


class Cursor(Protocol):
    """The part of a DBAPI cursor (sqlite3, psycopg) used here."""

    def execute(self, sql: str, params: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, params: Iterable[Any], /) -> Any: ...

    def fetchall(self) -> list[Any]: ...


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of a planned batch: run per parameter set if ``many``; ``prepare``
    is the driver's option (None: its default, False: plan on every execution)."""

    sql: str
    params: Any
    many: bool = False
    prepare: bool | None = None


class StatementLog:
    """A cursor that keeps what is run on it, for a batch planned without a connection
    and sent later in one round trip (pipelined.py). It has no results to fetch."""

    def __init__(self) -> None:
        self.statements: list[Statement] = []

    def execute(self, sql: str, params: Any = None, /, *, prepare: bool | None = None) -> None:
        self.statements.append(Statement(sql, params, prepare=prepare))

    def executemany(self, sql: str, params: Iterable[Any], /) -> None:
        self.statements.append(Statement(sql, list(params), many=True))

    def fetchall(self) -> list[Any]:
        raise TypeError("a statement log runs nothing, so it has no rows")


@dataclass(frozen=True, slots=True)
class _Insert:
    """An INSERT of many rows: per row (``executemany``) with positional parameters
    taken from each row by ``values``, or in one statement taking the rows as one JSON
    array (``values`` None, PostgreSQL)."""

    sql: str
    values: Callable[[Mapping[str, Any]], tuple[Any, ...]] | None

    def run(self, cursor: Cursor, rows: Sequence[Mapping[str, Any]]) -> None:
        if self.values is None:
            cursor.execute(self.sql, [orjson.dumps(rows).decode()])
        else:
            cursor.executemany(self.sql, map(self.values, rows))


class BulkStatements:
    """Prepared SQL text for one dialect's driver (``sqlite3`` or ``psycopg``)."""

    def __init__(self, dialect: str) -> None:
        self._postgres = dialect == "postgresql"
        self._insert_messages = self._insert(t.messages, skip=("pk",))
        self._insert_mentions = self._insert(t.mentions)
        self._insert_events = self._insert(t.room_events)
        if self._postgres:
            self._update_rooms = (
                "UPDATE rooms SET last_seq = v.seq, member_count = v.members "
                "FROM json_to_recordset(%s::json) AS v(id varchar, seq bigint, members integer) "
                "WHERE rooms.id = v.id"
            )
        else:
            self._update_rooms = (
                f"UPDATE rooms SET last_seq = {self._named('seq')}, "
                f"member_count = {self._named('members')} WHERE id = {self._named('target')}"
            )
        #: PostgreSQL's guarded counter write, the whole batch in one statement (SQLite's:
        #: :meth:`_sqlite_advance`).
        self._advance_rooms = (
            "UPDATE rooms SET last_seq = CASE WHEN rooms.last_seq = v.expected AND "
            "(SELECT count(*) FROM memberships AS m WHERE m.room_id = v.id "
            f"AND m.user_id = ANY(v.posters) AND m.state = '{JOINED}') "
            "= cardinality(v.posters) THEN v.seq END "
            "FROM json_to_recordset(%s::json) "
            "AS v(id varchar, seq bigint, expected bigint, posters varchar[]) "
            "WHERE rooms.id = v.id"
        )
        #: SQLite's guarded counter write for rooms of ``n`` posters, by ``n``.
        self._advance_rooms_of: dict[int, str] = {}
        self._add_replies = (
            f"UPDATE messages SET reply_count = reply_count + {self._named('n')} "
            f"WHERE id = {self._named('target')}"
        )

    def _named(self, name: str) -> str:
        return f"%({name})s" if self._postgres else f":{name}"

    def _insert(self, table: Table, skip: Sequence[str] = ()) -> _Insert:
        columns = [c for c in table.columns if c.name not in skip]
        names = ", ".join(c.name for c in columns)
        if self._postgres:
            # One statement for the whole batch, its rows as one JSON array: executed per
            # row, PostgreSQL's backend spent more on each INSERT's protocol messages and
            # executor start-up than on the row, and arrays per column cost the driver
            # several times more Python to send than JSON encoded by orjson.
            sql = (
                f"INSERT INTO {table.name} ({names}) SELECT {names} "
                f"FROM json_populate_recordset(NULL::{table.name}, %s::json)"
            )
            return _Insert(sql, values=None)
        # Positional: sqlite3 binds a named parameter by building its name as a string
        # and looking it up in the row, per column and row (~1.4 µs of a message's
        # 15 columns); itemgetter makes the tuple in one call.
        marks = ", ".join("?" * len(columns))
        sql = f"INSERT INTO {table.name} ({names}) VALUES ({marks})"
        return _Insert(sql, values=itemgetter(*(c.name for c in columns)))

    def _any_of(self, column: str, values: Sequence[str]) -> tuple[str, Sequence[Any]]:
        """``column IN (values)`` and its parameters: one array parameter on PostgreSQL."""
        if self._postgres:
            return f"{column} = ANY(%s)", [list(values)]
        return f"{column} IN ({', '.join('?' * len(values))})", values

    def pipeline(self, connection: Any) -> AbstractContextManager[Any]:
        """On PostgreSQL, psycopg's pipeline mode: statements are queued and the batch
        waits for the server once per phase (read state, write rows) instead of once per
        statement. A no-op on SQLite, which is in-process."""
        return connection.pipeline() if self._postgres else nullcontext()

    def commit_in_pipeline(self, cursor: Cursor) -> None:
        """On PostgreSQL, queue the transaction's COMMIT behind the batch's writes, so the
        pipeline's closing round trip returns once they are durable; the driver then
        finds no transaction left for the caller's commit. A no-op on SQLite.

        Committed separately, the commit was a round trip of its own after the writes'
        (a third of a small batch's wall time in the writer). If a write fails, the
        server skips the COMMIT with the rest of the pipeline and the transaction is
        rolled back.
        """
        if self._postgres:
            cursor.execute("COMMIT", prepare=False)  # type: ignore[call-arg]

    def _stored_keys(self, keys: Sequence[tuple[str, str, str]]) -> tuple[str, Sequence[Any]]:
        """The lookup of stored (room, sender, client id) triples, by their unique key.

        A join from the list of triples, so each is one seek in uq_messages_client_id
        (``(a, b, c) IN (VALUES …)`` made SQLite scan the whole index instead).

        On PostgreSQL each triple is a ``LATERAL … LIMIT 1`` probe, which the planner
        cannot turn into a hash join. As a plain join, a batch of 200 keys against a
        table of some thousands of rows was planned as a sequential scan of
        ``messages`` (its cost model takes an index probe for a random disk read), and
        that scan took ~10 ms of the database's time per batch while the probes take
        well under one.
        """
        if self._postgres:
            rooms, senders, client_ids = (list(column) for column in zip(*keys, strict=True))
            keys_sql = "unnest(%s::varchar[], %s::varchar[], %s::varchar[]) AS k(r, s, c)"
            probe = (
                "SELECT 1 FROM messages AS m WHERE m.room_id = k.r AND m.sender_id = k.s "
                "AND m.client_message_id = k.c LIMIT 1"
            )
            sql = f"SELECT k.r, k.s, k.c FROM {keys_sql} CROSS JOIN LATERAL ({probe}) AS found"
            return sql, [rooms, senders, client_ids]
        head = "SELECT m.room_id, m.sender_id, m.client_message_id FROM "
        values = ", ".join(["(?, ?, ?)"] * len(keys))
        on = "m.room_id = k.column1 AND m.sender_id = k.column2 AND m.client_message_id = k.column3"
        params = [v for key in keys for v in key]
        return f"{head}(VALUES {values}) AS k JOIN messages AS m ON {on}", params

    @staticmethod
    def _unprepared(cursor: Cursor, sql: str, params: Sequence[Any]) -> None:
        """Execute on PostgreSQL with a plan made for this execution.

        The driver prepares a statement run five times, and PostgreSQL may then keep
        one generic plan for the connection's life (the writer's is held): a join of
        the batch's rows with ``rooms`` planned while ``rooms`` was small stays a hash
        join over a scan of every room after it has grown. Planned each time, it is an
        index probe per room.
        """
        cursor.execute(sql, params, prepare=False)  # type: ignore[call-arg]

    def batch_state(
        self,
        connection: Any,
        room_ids: Sequence[str],
        client_keys: Sequence[tuple[str, str, str]],
        speakers: Sequence[tuple[str, str]],
        lock: bool,
    ) -> BatchState:
        """The rooms' counters, which of the batch's client ids are stored, and which of
        its speakers (posters, editors, reactors) are joined members, in one trip.

        Rooms come as (id, last_seq, member_count, settings JSON) in id order; with
        ``lock`` they are locked (``FOR UPDATE``) in that order, so two nodes committing
        to overlapping rooms queue up instead of deadlocking. ``client_keys`` are
        (room, sender, client id) triples; those already stored come back, found
        through the unique key that guards them (no index of its own). ``speakers`` are
        (room, user) pairs; the ones joined come back. The membership read follows the
        lock, so it sees a removal another node committed to a locked room.
        """
        rooms, stored, joined = connection.cursor(), connection.cursor(), connection.cursor()
        try:
            where, params = self._any_of("id", room_ids)
            sql = f"SELECT id, last_seq, member_count, settings FROM rooms WHERE {where}"
            # On PostgreSQL these are planned afresh each time (never prepared): a plan
            # made while the tables were small would scan them once they are not.
            unprepared = {"prepare": False} if self._postgres else {}
            rooms.execute(
                sql + " ORDER BY id" + (" FOR UPDATE" if lock else ""), params, **unprepared
            )
            if client_keys:
                stored.execute(*self._stored_keys(client_keys), **unprepared)
            if speakers:
                joined.execute(*self._joined_pairs(speakers), **unprepared)
            # All are sent before any is read: one round trip in a pipeline.
            counters = [tuple(row) for row in rooms.fetchall()]
            taken = {(r, s, c) for r, s, c in stored.fetchall()} if client_keys else set()
            members = {(r, u) for r, u in joined.fetchall()} if speakers else set()
        finally:
            rooms.close()
            stored.close()
            joined.close()
        return BatchState(counters, taken, members)

    def _joined_pairs(self, pairs: Sequence[tuple[str, str]]) -> tuple[str, Sequence[Any]]:
        """The lookup of which (room, user) pairs are joined members: one probe each of
        the memberships primary key.

        Written as probes rather than a join: as a join, PostgreSQL planned a hash join
        over a scan of every membership for 200 pairs against a few thousand rows (and
        SQLite, once ANALYZE has run, a scan behind a Bloom filter).
        """
        if self._postgres:
            rooms, users = (list(column) for column in zip(*pairs, strict=True))
            probe = (
                "SELECT 1 FROM memberships AS m WHERE m.room_id = k.r AND m.user_id = k.u "
                f"AND m.state = '{JOINED}' LIMIT 1"
            )
            sql = (
                "SELECT k.r, k.u FROM unnest(%s::varchar[], %s::varchar[]) AS k(r, u) "
                f"CROSS JOIN LATERAL ({probe}) AS found"
            )
            return sql, [rooms, users]
        values = ", ".join(["(?, ?)"] * len(pairs))
        state = (
            "SELECT m.state FROM memberships AS m "
            "WHERE m.room_id = k.column1 AND m.user_id = k.column2"
        )
        sql = (
            f"SELECT k.column1, k.column2 FROM (VALUES {values}) AS k WHERE ({state}) = '{JOINED}'"
        )
        return sql, [v for pair in pairs for v in pair]

    def insert_messages(self, cursor: Cursor, rows: Sequence[Mapping[str, Any]]) -> None:
        self._insert_messages.run(cursor, rows)

    def insert_mentions(self, cursor: Cursor, rows: Sequence[Mapping[str, Any]]) -> None:
        self._insert_mentions.run(cursor, rows)

    def insert_events(self, cursor: Cursor, rows: Sequence[Mapping[str, Any]]) -> None:
        self._insert_events.run(cursor, rows)

    def add_replies(self, cursor: Cursor, counts: Mapping[str, int]) -> None:
        """Raise each thread root's reply count by the replies this batch adds to it."""
        cursor.executemany(self._add_replies, [{"target": k, "n": n} for k, n in counts.items()])

    def advance_counters(self, cursor: Cursor, moves: Sequence[CounterMove]) -> None:
        """Move each room's last seq from the value this node knew to the batch's, in id
        order, if every poster of the batch in that room is still a joined member.

        Guarded, for numbers taken without reading the counters (counters.py) or the
        memberships: a room whose stored counter is not ``expected``, or one of whose
        posters is no longer a member, would be set to NULL, which its NOT NULL
        constraint refuses, so the statement fails with an IntegrityError and the
        transaction with it; the batch then runs again the long way, which tells which
        post it was. On PostgreSQL the rooms are first locked in id order, as
        :meth:`batch_state` locks them, so nodes writing to the same rooms queue up
        rather than deadlock, and the memberships are read once another node's removal
        holding the lock has committed.
        """
        if self._postgres:
            where, params = self._any_of("id", [move.room_id for move in moves])
            self._unprepared(
                cursor, f"SELECT 1 FROM rooms WHERE {where} ORDER BY id FOR UPDATE", params
            )
            values = [
                {"id": m.room_id, "seq": m.new, "expected": m.expected, "posters": m.posters}
                for m in moves
            ]
            self._unprepared(cursor, self._advance_rooms, [orjson.dumps(values).decode()])
            return
        # Grouped by how many posters a room has: the posters go in as an IN list, as
        # many parameters as there are (JSON decoded by json_each cost 3-4x as much).
        by_count: dict[int, list[tuple[Any, ...]]] = {}
        for m in moves:
            row = (m.expected, m.room_id, *m.posters, m.new, m.room_id)
            by_count.setdefault(len(m.posters), []).append(row)
        for count, rows in by_count.items():
            cursor.executemany(self._sqlite_advance(count), rows)

    def _sqlite_advance(self, posters: int) -> str:
        """SQLite's guarded counter write for a room with ``posters`` posters."""
        sql = self._advance_rooms_of.get(posters)
        if sql is None:
            members = (
                f"SELECT count(*) FROM memberships WHERE room_id = ? AND state = '{JOINED}' "
                f"AND user_id IN ({', '.join('?' * posters)})"
            )
            sql = self._advance_rooms_of[posters] = (
                f"UPDATE rooms SET last_seq = CASE WHEN last_seq = ? AND ({members}) = {posters} "
                "THEN ? END WHERE id = ?"
            )
        return sql

    def write_counters(self, cursor: Cursor, counters: Iterable[tuple[str, int, int]]) -> None:
        """Store each room's (id, last seq, member count) as the batch left them."""
        if self._postgres:
            values = [{"id": room, "seq": seq, "members": n} for room, seq, n in counters]
            self._unprepared(cursor, self._update_rooms, [orjson.dumps(values).decode()])
            return
        cursor.executemany(
            self._update_rooms,
            [{"target": room, "seq": seq, "members": n} for room, seq, n in counters],
        )
