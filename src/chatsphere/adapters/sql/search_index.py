"""SQLite full-text index fed in bulk, behind the commit path.

FTS5 writes a new index segment for every transaction that touches it (and merges
them later), so indexing each group commit's few messages as they were inserted cost
about a third of the store's CPU per message. Instead, the index covers the messages
up to a watermark, ``messages_fts_state.indexed_pk``, and :meth:`SearchIndexer.catch_up`
indexes everything past it in one statement and moves the watermark, in the same
transaction. It runs inside a group commit once enough messages wait, on a timer
when traffic is light, and before every search, so a search sees every message
committed before it.

Edits and deletions stay exact: migration 0003's triggers update the index for rows
at or below the watermark (an external-content FTS5 index must be told the old text
to remove a row), and leave rows above it alone, whose current text the indexer will
read when it reaches them. Rows without text are indexed too (as empty documents),
exactly as the old per-insert trigger did, so FTS5's own ``integrity-check`` holds
whenever the watermark is at the top. PostgreSQL keeps its GIN index, which PostgreSQL maintains.
"""

from __future__ import annotations

from sqlalchemy import Connection

#: Index inside a group commit once this many messages wait (one segment per batch).
CATCH_UP_ROWS = 256
#: At most this many per group commit, so no batch carries a long tail of indexing.
CATCH_UP_LIMIT = 1_024

_WATERMARK = "SELECT indexed_pk FROM messages_fts_state WHERE id = 1"
_INDEX_RANGE = (
    "INSERT INTO messages_fts(rowid, search_text, room_id) "
    "SELECT pk, search_text, room_id FROM messages "
    "WHERE pk > ? AND pk <= ?"
)
_MOVE_WATERMARK = "UPDATE messages_fts_state SET indexed_pk = ? WHERE id = 1"


class SearchIndexer:
    """Keeps ``messages_fts`` up to date in bulk.

    Every method runs in the store's writer thread, so the counter needs no lock; the
    event loop only reads :attr:`pending` as a hint.
    """

    def __init__(self, catch_up_rows: int = CATCH_UP_ROWS) -> None:
        self._catch_up_rows = catch_up_rows
        self._pending = 0  # a hint for scheduling; the watermark is the truth

    @property
    def pending(self) -> int:
        """Messages committed by this node and not indexed yet (approximately)."""
        return self._pending

    @property
    def due(self) -> bool:
        """Whether the next group commit should index what waits."""
        return self._pending >= self._catch_up_rows

    def posted(self, count: int) -> None:
        """``count`` messages were committed."""
        self._pending += count

    def indexed(self, count: int) -> None:
        """A committed :meth:`catch_up` indexed ``count`` messages."""
        self._pending = max(0, self._pending - count)

    def measure(self, conn: Connection) -> None:
        """Set :attr:`pending` from the database (at start, after a crash say)."""
        lag = conn.exec_driver_sql(
            f"SELECT coalesce(max(pk), 0) - ({_WATERMARK}) FROM messages"  # noqa: S608
        ).scalar()
        self._pending = max(0, int(lag or 0))

    def catch_up(self, conn: Connection, limit: int | None = None) -> int:
        """Index the messages past the watermark (at most ``limit``) in ``conn``'s transaction.

        Returns how many rows the watermark moved over. The caller commits; a rollback
        takes the index rows and the watermark back together.
        """
        mark = int(conn.exec_driver_sql(_WATERMARK).scalar_one())
        top = int(conn.exec_driver_sql("SELECT coalesce(max(pk), 0) FROM messages").scalar_one())
        if limit is not None:
            top = min(top, mark + limit)
        if top <= mark:
            return 0
        conn.exec_driver_sql(_INDEX_RANGE, (mark, top))
        conn.exec_driver_sql(_MOVE_WATERMARK, (top,))
        return top - mark
