"""SQLite: the full-text index moves to a file of its own (adapters/sql/search_index.py).

The index and its watermark leave the messages database. What stays is what the index
needs from it: ``search_changes``, a log of the messages whose text changed or that went
away, which triggers append to and the indexer consumes, and ``search_source``, a random
token that tells an index file built from this database from one built from another.
The new index file is built from the messages in the background on the first start.
PostgreSQL is unchanged.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TRIGGER messages_fts_au")
    op.execute("DROP TRIGGER messages_fts_ad")
    op.execute("DROP TABLE messages_fts")
    op.execute("DROP TABLE messages_fts_state")
    # AUTOINCREMENT: a number is never handed out twice, even once every row is pruned,
    # so the indexer's watermark cannot skip a change.
    op.execute(
        "CREATE TABLE search_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, pk INTEGER NOT NULL)"
    )
    op.execute(
        "CREATE TRIGGER search_changes_au AFTER UPDATE OF search_text ON messages "
        "BEGIN INSERT INTO search_changes (pk) VALUES (new.pk); END"
    )
    op.execute(
        "CREATE TRIGGER search_changes_ad AFTER DELETE ON messages "
        "BEGIN INSERT INTO search_changes (pk) VALUES (old.pk); END"
    )
    op.execute(
        "CREATE TABLE search_source (id INTEGER PRIMARY KEY CHECK (id = 1), token TEXT NOT NULL)"
    )
    op.execute("INSERT INTO search_source (id, token) VALUES (1, lower(hex(randomblob(16))))")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TRIGGER search_changes_au")
    op.execute("DROP TRIGGER search_changes_ad")
    op.execute("DROP TABLE search_changes")
    op.execute("DROP TABLE search_source")
    # Revision 0006's index inside the database, rebuilt whole from the messages.
    op.execute(
        "CREATE VIRTUAL TABLE messages_fts USING fts5("
        "search_text, room_id UNINDEXED, content='messages', content_rowid='pk', "
        "tokenize='unicode61 remove_diacritics 2')"
    )
    op.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
    op.execute(
        "CREATE TABLE messages_fts_state ("
        "id INTEGER PRIMARY KEY CHECK (id = 1), indexed_pk INTEGER NOT NULL)"
    )
    op.execute(
        "INSERT INTO messages_fts_state (id, indexed_pk) "
        "SELECT 1, coalesce(max(pk), 0) FROM messages"
    )
    indexed = "old.pk <= (SELECT indexed_pk FROM messages_fts_state WHERE id = 1)"
    remove_old = (
        "INSERT INTO messages_fts(messages_fts, rowid, search_text, room_id) "
        "VALUES ('delete', old.pk, old.search_text, old.room_id); "
    )
    add_new = (
        "INSERT INTO messages_fts(rowid, search_text, room_id) "
        "VALUES (new.pk, new.search_text, new.room_id); "
    )
    op.execute(
        "CREATE TRIGGER messages_fts_au AFTER UPDATE OF search_text ON messages "
        f"WHEN {indexed} BEGIN {remove_old}{add_new}END"
    )
    op.execute(
        f"CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages WHEN {indexed} "
        f"BEGIN {remove_old}END"
    )
