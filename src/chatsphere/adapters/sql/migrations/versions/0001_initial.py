"""Initial schema: rooms, memberships, messages, reactions, mentions, event log, search.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Written out rather than metadata.create_all(): later revisions change the schema.
    op.create_table(
        "memberships",
        sa.Column("room_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("joined_at", sa.BigInteger(), nullable=False),
        sa.Column("invited_by", sa.String(length=128), nullable=True),
        sa.Column("last_read_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("room_id", "user_id"),
    )
    op.create_index("ix_memberships_user", "memberships", ["user_id"], unique=False)
    op.create_table(
        "mentions",
        sa.Column("room_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("room_id", "user_id", "seq"),
    )
    op.create_table(
        "message_edits",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("edited_at", sa.BigInteger(), nullable=False),
        sa.Column("edited_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
    )
    op.create_index(
        op.f("ix_message_edits_message_id"), "message_edits", ["message_id"], unique=False
    )
    op.create_table(
        "messages",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("room_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("sender_id", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("search_text", sa.Text(), nullable=True),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("reply_to", sa.String(length=64), nullable=True),
        sa.Column("reply_count", sa.Integer(), nullable=False),
        sa.Column("mentions", sa.Text(), nullable=False),
        sa.Column("client_message_id", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("id"),
        sa.UniqueConstraint(
            "room_id", "sender_id", "client_message_id", name="uq_messages_client_id"
        ),
        sa.UniqueConstraint("room_id", "seq", name="uq_messages_room_seq"),
    )
    op.create_index("ix_messages_reply_to", "messages", ["reply_to"], unique=False)
    op.create_table(
        "reactions",
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("emoji", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("message_id", "emoji", "user_id"),
    )
    op.create_table(
        "room_events",
        sa.Column("room_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("actor_id", sa.String(length=128), nullable=True),
        sa.Column("message_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("room_id", "seq"),
    )
    op.create_index("ix_room_events_message", "room_events", ["message_id"], unique=False)
    op.create_table(
        "rooms",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("is_private", sa.Boolean(), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("member_count", sa.Integer(), nullable=False),
        sa.Column("dm_key", sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dm_key"),
    )
    op.create_index("ix_rooms_public", "rooms", ["is_private", "created_at"], unique=False)
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # External content: the index reads text from messages and keeps no copy,
        # which halves its cost on the send path.
        op.execute(
            "CREATE VIRTUAL TABLE messages_fts USING fts5("
            "search_text, room_id UNINDEXED, content='messages', content_rowid='pk', "
            "tokenize='unicode61 remove_diacritics 2')"
        )
        # Keep the index in step with messages.search_text, whatever writes it.
        op.execute(
            "CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages BEGIN "
            "INSERT INTO messages_fts(rowid, search_text, room_id) "
            "VALUES (new.pk, new.search_text, new.room_id); END"
        )
        op.execute(
            "CREATE TRIGGER messages_fts_au AFTER UPDATE OF search_text ON messages BEGIN "
            "INSERT INTO messages_fts(messages_fts, rowid, search_text, room_id) "
            "VALUES ('delete', old.pk, old.search_text, old.room_id); "
            "INSERT INTO messages_fts(rowid, search_text, room_id) "
            "VALUES (new.pk, new.search_text, new.room_id); END"
        )
        op.execute(
            "CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages BEGIN "
            "INSERT INTO messages_fts(messages_fts, rowid, search_text, room_id) "
            "VALUES ('delete', old.pk, old.search_text, old.room_id); END"
        )
    else:
        op.execute(
            "CREATE INDEX ix_messages_search ON messages "
            "USING gin (to_tsvector('simple', coalesce(search_text, '')))"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE messages_fts")
    for table in (
        "rooms",
        "room_events",
        "reactions",
        "messages",
        "message_edits",
        "mentions",
        "memberships",
    ):
        op.drop_table(table)
