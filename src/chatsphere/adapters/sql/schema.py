"""Tables. Times are epoch milliseconds (BigInteger) and JSON is stored as text,
so both dialects store and compare them the same way."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

rooms = Table(
    "rooms",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("type", String(32), nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", Text),
    Column("created_by", String(128), nullable=False),
    Column("is_private", Boolean, nullable=False),
    Column("settings", Text, nullable=False),
    Column("metadata", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger),
    Column("last_seq", BigInteger, nullable=False, default=0),
    Column("member_count", Integer, nullable=False, default=0),
    Column("dm_key", String(300), unique=True),
)
Index("ix_rooms_public", rooms.c.is_private, rooms.c.created_at)

memberships = Table(
    "memberships",
    metadata,
    Column("room_id", String(64), primary_key=True),
    Column("user_id", String(128), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("joined_at", BigInteger, nullable=False),
    Column("invited_by", String(128)),
    Column("last_read_seq", BigInteger, nullable=False, default=0),
)
Index("ix_memberships_user", memberships.c.user_id)

messages = Table(
    "messages",
    metadata,
    Column(
        "pk", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("id", String(64), nullable=False, unique=True),
    Column("room_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("sender_id", String(128), nullable=False),
    Column("type", String(16), nullable=False),
    Column("content", Text, nullable=False),
    Column("search_text", Text),
    Column("metadata", Text, nullable=False),
    Column("reply_to", String(64)),
    Column("reply_count", Integer, nullable=False, default=0),
    Column("mentions", Text, nullable=False),
    Column("client_message_id", String(128)),
    Column("status", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger),
    UniqueConstraint("room_id", "seq", name="uq_messages_room_seq"),
    UniqueConstraint("room_id", "sender_id", "client_message_id", name="uq_messages_client_id"),
)
# Replies only (migration 0005): most messages are not replies, and a NULL entry per
# insert was one more B-tree page for every group commit to write.
Index(
    "ix_messages_reply_to",
    messages.c.reply_to,
    sqlite_where=messages.c.reply_to.isnot(None),
    postgresql_where=messages.c.reply_to.isnot(None),
)

message_edits = Table(
    "message_edits",
    metadata,
    Column(
        "pk", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("message_id", String(64), nullable=False, index=True),
    Column("content", Text, nullable=False),
    Column("edited_at", BigInteger, nullable=False),
    Column("edited_by", String(128), nullable=False),
)

reactions = Table(
    "reactions",
    metadata,
    Column("message_id", String(64), primary_key=True),
    Column("emoji", String(64), primary_key=True),
    Column("user_id", String(128), primary_key=True),
    Column("created_at", BigInteger, nullable=False),
)

mentions = Table(
    "mentions",
    metadata,
    Column("room_id", String(64), primary_key=True),
    Column("user_id", String(128), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("message_id", String(64), nullable=False),
)

room_events = Table(
    "room_events",
    metadata,
    Column("room_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("type", String(32), nullable=False),
    Column("data", Text, nullable=False),
    Column("actor_id", String(128)),
    Column("message_id", String(64)),
    Column("created_at", BigInteger, nullable=False),
)
Index("ix_room_events_message", room_events.c.message_id)
