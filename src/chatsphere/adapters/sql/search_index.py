"""SQLite's full-text index, in a database file of its own, fed by a thread of its own.

SQLite lets one connection write to a database file at a time, so whatever writes the
index inside the messages database holds up the group commits for as long as it takes.
FTS5 writes a segment per transaction and merges segments as they pile up, and its merges
grow with the index: with two million messages stored, single merges took 50 ms of CPU,
and every send queued behind the commit that ran them waited as long. So the index lives
in ``<database>-search``, a file with its own write lock, and one low-priority thread
(:func:`~.background.lower_thread_priority`) feeds it; the writer never touches it.

The indexer reads the messages database through a read-only ``ATTACH``, so copying text
into the index takes a few statements in SQLite, without Python in between. The index covers
the messages up to a watermark, ``indexed_pk``, stored in the index's own file and moved
in the same transaction as the rows it covers, so the two cannot disagree after a crash.
Edits and deletions reach it through ``search_changes`` in the messages database, a log
that triggers on ``messages`` append to (migration 0007) and the indexer consumes up to a
second watermark, ``change_seq``; the store prunes what the indexer has consumed.

The index holds nothing that cannot be rebuilt from the messages: a missing, corrupt or
foreign index file (one built from another database, told by ``search_source``'s token)
is started afresh and filled again in the background. A search first indexes every
message committed before it, so it sees them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from .background import lower_thread_priority

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The index file's own layout; a file of another version is rebuilt.
INDEX_VERSION = 1
#: Messages indexed per transaction: each one writes one FTS5 segment.
CATCH_UP_CHUNK = 10_000
#: At most this many chunks are indexed at close.
CLOSE_CHUNKS = 5

_STATE = (
    "CREATE TABLE IF NOT EXISTS search_state ("
    "id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL, source TEXT NOT NULL, "
    "indexed_pk INTEGER NOT NULL, change_seq INTEGER NOT NULL)"
)
# The index keeps its own copy of the text (it cannot point into another file), and no
# per-document sizes: results are ordered by time, never by rank.
_INDEX = (
    "CREATE VIRTUAL TABLE messages_fts USING fts5("
    "search_text, tokenize='unicode61 remove_diacritics 2', columnsize=0)"
)
# The indexer copies what it will index into tables of its connection's in-memory temp
# database first, in a short read of the messages file, then indexes from there holding
# only the index file's lock. Reading the messages file all the while the index was being
# written kept a snapshot of it open for seconds on a busy core, and no checkpoint could
# then copy the whole WAL, so the WAL grew until the writer checkpointed inside a commit.
_TEMP_TABLES = (
    "CREATE TEMP TABLE IF NOT EXISTS arrived (pk INTEGER PRIMARY KEY, search_text TEXT)",
    "CREATE TEMP TABLE IF NOT EXISTS changed ("
    "pk INTEGER PRIMARY KEY, search_text TEXT, present INTEGER NOT NULL)",
)
_COPY_ARRIVED = (
    "INSERT INTO temp.arrived SELECT pk, search_text FROM src.messages WHERE pk > ? AND pk <= ?"
)
# Rows past the watermark are copied with their current text as they arrive anyway.
_COPY_CHANGED = (
    "INSERT OR REPLACE INTO temp.changed "
    "SELECT c.pk, m.search_text, m.pk IS NOT NULL FROM src.search_changes AS c "
    "LEFT JOIN src.messages AS m ON m.pk = c.pk "
    "WHERE c.seq > ? AND c.seq <= ? AND c.pk <= ? ORDER BY c.seq"
)
_INDEX_WRITES = (
    "DELETE FROM messages_fts WHERE rowid IN (SELECT pk FROM temp.changed)",
    "INSERT INTO messages_fts(rowid, search_text) "
    "SELECT pk, search_text FROM temp.changed WHERE present",
    "INSERT INTO messages_fts(rowid, search_text) SELECT pk, search_text FROM temp.arrived",
)
_CLEAR_TEMP = ("DELETE FROM temp.arrived", "DELETE FROM temp.changed")
_TOP_PK = "SELECT coalesce(max(pk), 0) FROM src.messages"
_TOP_CHANGE = "SELECT coalesce(max(seq), 0) FROM src.search_changes"
# Every change number ever handed out, pruned or not (search_changes is AUTOINCREMENT).
_LAST_CHANGE = "SELECT coalesce(max(seq), 0) FROM src.sqlite_sequence WHERE name = 'search_changes'"
# The oldest change still logged; every one before it was pruned. Numbers are contiguous
# (a rolled-back insert takes its number back with it), so an index whose change_seq is
# below this minus one never saw the changes in between.
_FIRST_LOGGED_CHANGE = f"SELECT coalesce(min(seq), ({_LAST_CHANGE}) + 1) FROM src.search_changes"  # noqa: S608
#: SQLite's result codes for a file that is not a database or is damaged (low byte).
_DAMAGED = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
#: How many of the newest matches, all rooms together, a search looks through first.
NEWEST_MATCHES_WINDOW = 10_000
# The newest matches first, by pk, looking each one's room up on the way: a co-routine, so
# the outer LIMIT ends the scan once the room's newest ``limit`` are found. Within a room
# pk order is seq order: the writer inserts a batch's messages in the order it numbers
# them. The window bounds what a search for a word common elsewhere but rare in the room
# looks through before it falls back to _MATCHING.
_NEWEST_MATCHING = (
    "SELECT pk FROM (SELECT rowid AS pk, "
    "(SELECT room_id FROM src.messages WHERE pk = messages_fts.rowid) AS room_id "
    "FROM messages_fts WHERE messages_fts MATCH ? ORDER BY rowid DESC LIMIT ?) "
    "WHERE room_id = ? LIMIT ?"
)
# Every match of every room, then the room's: its cost grows with the word's matches in
# the whole database (20 ms for a word in each of 135,000 messages).
_MATCHING = (
    "SELECT pk FROM src.messages WHERE room_id = ? AND pk IN "
    "(SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?) ORDER BY seq DESC LIMIT ?"
)


def search_index_path(database: Path) -> Path:
    """Where the index of the messages database ``database`` lives."""
    return database.with_name(database.name + "-search")


class SearchIndex:
    """The full-text index of one SQLite messages database. Construct, then ``await open()``.

    Every method that touches the index runs in the indexer's one thread, in the order
    called; the watermarks it publishes are read by the loop as hints.
    """

    def __init__(
        self,
        database: Path,
        *,
        chunk: int = CATCH_UP_CHUNK,
        busy_timeout: float = 30.0,
        newest_window: int = NEWEST_MATCHES_WINDOW,
    ) -> None:
        self.database = database
        self.path = search_index_path(database)
        self._chunk = chunk
        self._newest_window = newest_window
        self._busy_timeout = busy_timeout
        self._executor = ThreadPoolExecutor(
            1, thread_name_prefix="chatsphere-search", initializer=lower_thread_priority
        )
        self._conn: sqlite3.Connection | None = None  # the indexer thread's
        self.indexed_pk = 0  # the committed watermarks, as last seen by the indexer
        self.change_seq = 0
        self.rebuilds = 0  # how often the index was started afresh, its first start included

    # -- lifecycle, from the event loop ------------------------------------------------
    async def open(self) -> None:
        """Open the index file, starting it afresh if it is missing or unusable.

        Raises what SQLite raised if the file could not be opened for another reason (held
        by another process past the busy timeout, a full disk): its thread is stopped then.
        """
        try:
            await self._run(self._open)
        except BaseException:
            await self._run(self._close)
            self._executor.shutdown(wait=True)
            raise

    async def close(self) -> None:
        """Index what waits (so the file is current for whoever opens it next), then stop.

        At most :data:`CLOSE_CHUNKS` chunks, so that a long backlog (an index being
        rebuilt) does not hold up a shutdown; the next start goes on from the watermark.
        """
        try:
            await self.catch_up(CLOSE_CHUNKS)
        except Exception:  # the next start catches up
            log.exception("full-text indexing failed at close")
        await self._run(self._close)
        self._executor.shutdown(wait=True)

    async def catch_up(self, chunks: int | None = None) -> int:
        """Index what was committed so far, or ``chunks`` chunks of it; returns how many
        messages were indexed."""
        return await self._run(functools.partial(self._catch_up_fully, chunks))

    async def search(self, room_id: str, words: Sequence[str], limit: int) -> list[int]:
        """The pks of ``room_id``'s newest ``limit`` messages holding every word, newest first.

        Messages committed before the call are indexed first, so none is missed. The
        newest :data:`NEWEST_MATCHES_WINDOW` matches of all rooms are looked through first;
        only if the room has fewer than ``limit`` among them are all its matches gathered.
        """
        match = " ".join(f'"{w}"' for w in words)  # each a phrase: no operator survives

        def run() -> list[int]:
            self._catch_up_fully()
            conn = self._connection()
            rows = conn.execute(
                _NEWEST_MATCHING, (match, self._newest_window, room_id, limit)
            ).fetchall()
            if len(rows) < limit:
                rows = conn.execute(_MATCHING, (room_id, match, limit)).fetchall()
            return [int(pk) for (pk,) in rows]

        return await self._run(run)

    async def _run(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    # -- the indexer thread ----------------------------------------------------------
    def _open(self) -> None:
        try:
            self._open_once()
        except sqlite3.DatabaseError as exc:
            # Errors the sqlite3 module raises itself carry no SQLite result code.
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in _DAMAGED:
                raise  # busy, full, unreadable: deleting the file would not help
            # Corrupt, or not a database at all: it is only a cache of the messages.
            log.warning("full-text index %s is unusable; rebuilding it", self.path, exc_info=True)
            self._close()
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{self.path}{suffix}").unlink()
            self._open_once()

    def _open_once(self) -> None:
        conn = self._connection()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA temp_store=MEMORY")
        for sql in _TEMP_TABLES:
            conn.execute(sql)
        # A crash may lose the last few rounds, never the index's consistency with its
        # watermarks; whatever was lost is indexed again from the messages.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(_STATE)
        with self._transaction() as tx:
            source = tx.execute("SELECT token FROM src.search_source").fetchone()
            token = str(source[0]) if source else ""
            state = tx.execute(
                "SELECT version, source, indexed_pk, change_seq FROM search_state"
            ).fetchone()
            usable = (
                state is not None
                and state[0] == INDEX_VERSION
                and state[1] == token
                and int(state[2]) <= int(tx.execute(_TOP_PK).fetchone()[0])
                and int(state[3]) <= int(tx.execute(_LAST_CHANGE).fetchone()[0])
                # Changes pruned that this index never applied: it lost its last rounds
                # (it is synced at checkpoints only), or it is an older copy.
                and int(tx.execute(_FIRST_LOGGED_CHANGE).fetchone()[0]) <= int(state[3]) + 1
            )
            if usable:
                self.indexed_pk, self.change_seq = int(state[2]), int(state[3])
                return
            if state is not None:
                log.warning("full-text index %s belongs elsewhere; rebuilding it", self.path)
            # Every message will be indexed with its current text: no change before now
            # concerns the new index.
            self.indexed_pk, self.change_seq = 0, int(tx.execute(_LAST_CHANGE).fetchone()[0])
            tx.execute("DROP TABLE IF EXISTS messages_fts")
            tx.execute(_INDEX)
            tx.execute(
                "INSERT OR REPLACE INTO search_state VALUES (1, ?, ?, ?, ?)",
                (INDEX_VERSION, token, self.indexed_pk, self.change_seq),
            )
            self.rebuilds += 1

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(
                f"file:{quote(str(self.path))}",
                uri=True,
                isolation_level=None,
                timeout=self._busy_timeout,
            )
            try:
                # Read-only: even BEGIN IMMEDIATE then takes no lock on the messages file.
                conn.execute(
                    "ATTACH DATABASE ? AS src", (f"file:{quote(str(self.database))}?mode=ro",)
                )
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on the index file that holds no snapshot of the messages.

        Not ``BEGIN IMMEDIATE``: that opens a read transaction on every attached database
        too, and a snapshot of the messages file held for the whole of an index write kept
        checkpoints from copying the WAL. A deferred ``BEGIN`` whose first statement writes
        the index file takes only that file's lock (waiting up to the busy timeout).
        """
        conn = self._connection()
        conn.execute("BEGIN")
        try:
            conn.execute("UPDATE search_state SET change_seq = change_seq")
            yield conn
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _catch_up_fully(self, chunks: int | None = None) -> int:
        """Index in chunks until one finds nothing more to do, or ``chunks`` of them ran."""
        total = 0
        while chunks is None or chunks > 0:
            indexed, complete = self._catch_up_once()
            total += indexed
            if complete:
                break
            chunks = None if chunks is None else chunks - 1
        return total

    def _catch_up_once(self) -> tuple[int, bool]:
        """Apply logged changes and index up to a chunk of new messages.

        First a read of the messages file, one snapshot for all of it, so the watermarks
        move exactly over what was copied; then one transaction on the index file.
        """
        conn = self._connection()
        indexed, changes_from = self.indexed_pk, self.change_seq
        conn.execute("BEGIN")
        try:
            for sql in _CLEAR_TEMP:
                conn.execute(sql)
            top = int(conn.execute(_TOP_PK).fetchone()[0])
            changes_to = max(changes_from, int(conn.execute(_TOP_CHANGE).fetchone()[0]))
            upto = min(top, indexed + self._chunk)
            if changes_to > changes_from and indexed:
                conn.execute(_COPY_CHANGED, (changes_from, changes_to, indexed))
            if upto > indexed:
                conn.execute(_COPY_ARRIVED, (indexed, upto))
        finally:
            conn.execute("COMMIT")  # it only read the messages file
        if upto == indexed and changes_to == changes_from:
            return 0, True
        with self._transaction() as tx:
            state = tx.execute("SELECT indexed_pk, change_seq FROM search_state").fetchone()
            if tuple(state) != (indexed, changes_from):
                # Another process on the same files (two nodes started on one database)
                # moved the watermarks: go on from where it left them.
                log.warning("full-text index %s was fed by another process", self.path)
                self.indexed_pk, self.change_seq = int(state[0]), int(state[1])
                return 0, False
            for sql in _INDEX_WRITES:
                tx.execute(sql)
            tx.execute("UPDATE search_state SET indexed_pk = ?, change_seq = ?", (upto, changes_to))
        self.indexed_pk, self.change_seq = upto, changes_to
        return upto - indexed, upto == top
