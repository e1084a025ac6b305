"""Initial schema: rooms, memberships, messages, reactions, mentions, event log, search.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

from chatsphere.adapters.sql.schema import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    metadata.create_all(bind)
    if bind.dialect.name == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE messages_fts USING fts5("
            "search_text, room_id UNINDEXED, tokenize='unicode61 remove_diacritics 2')"
        )
        # Keep the index in step with messages.search_text, whatever writes it.
        op.execute(
            "CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages "
            "WHEN new.search_text IS NOT NULL BEGIN "
            "INSERT INTO messages_fts(rowid, search_text, room_id) "
            "VALUES (new.pk, new.search_text, new.room_id); END"
        )
        op.execute(
            "CREATE TRIGGER messages_fts_au AFTER UPDATE OF search_text ON messages BEGIN "
            "DELETE FROM messages_fts WHERE rowid = old.pk; "
            "INSERT INTO messages_fts(rowid, search_text, room_id) "
            "SELECT new.pk, new.search_text, new.room_id WHERE new.search_text IS NOT NULL; END"
        )
        op.execute(
            "CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages BEGIN "
            "DELETE FROM messages_fts WHERE rowid = old.pk; END"
        )
    else:
        op.execute(
            "CREATE INDEX ix_messages_search ON messages "
            "USING gin (to_tsvector('simple', coalesce(search_text, '')))"
        )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("DROP TABLE messages_fts")
    metadata.drop_all(bind)
