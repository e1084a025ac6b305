"""SQLite: feed the full-text index in bulk up to a watermark instead of per insert.

Messages at or below ``messages_fts_state.indexed_pk`` are in ``messages_fts``; the
store indexes the rest in bulk (adapters/sql/search_index.py). The insert trigger
goes; the update and delete triggers act only on indexed rows. Every message that
exists now was indexed by the old insert trigger, so the watermark starts at the
highest pk. PostgreSQL is unchanged.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_INDEXED = "old.pk <= (SELECT indexed_pk FROM messages_fts_state WHERE id = 1)"
_REMOVE_OLD = (
    "INSERT INTO messages_fts(messages_fts, rowid, search_text, room_id) "
    "VALUES ('delete', old.pk, old.search_text, old.room_id); "
)
_ADD_NEW = (
    "INSERT INTO messages_fts(rowid, search_text, room_id) "
    "VALUES (new.pk, new.search_text, new.room_id); "
)


def _replace_update_and_delete_triggers(when: str) -> None:
    op.execute("DROP TRIGGER messages_fts_au")
    op.execute("DROP TRIGGER messages_fts_ad")
    op.execute(
        "CREATE TRIGGER messages_fts_au AFTER UPDATE OF search_text ON messages "
        f"{when}BEGIN {_REMOVE_OLD}{_ADD_NEW}END"
    )
    op.execute(
        f"CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages {when}BEGIN {_REMOVE_OLD}END"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(
        "CREATE TABLE messages_fts_state ("
        "id INTEGER PRIMARY KEY CHECK (id = 1), indexed_pk INTEGER NOT NULL)"
    )
    op.execute(
        "INSERT INTO messages_fts_state (id, indexed_pk) "
        "SELECT 1, coalesce(max(pk), 0) FROM messages"
    )
    op.execute("DROP TRIGGER messages_fts_ai")
    _replace_update_and_delete_triggers(f"WHEN {_INDEXED} ")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # Index what waits, then go back to indexing every insert.
    op.execute(
        "INSERT INTO messages_fts(rowid, search_text, room_id) "
        "SELECT pk, search_text, room_id FROM messages "
        "WHERE pk > (SELECT indexed_pk FROM messages_fts_state WHERE id = 1)"
    )
    _replace_update_and_delete_triggers("")
    op.execute(f"CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages BEGIN {_ADD_NEW}END")
    op.execute("DROP TABLE messages_fts_state")
