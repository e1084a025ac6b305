"""Index only the replies: ix_messages_reply_to becomes partial (reply_to IS NOT NULL).

Most messages are not replies, yet every insert added a NULL entry to this index: one
more B-tree to update and one more page for the group commit to write. A thread's
query (``reply_to = :id``) implies ``reply_to IS NOT NULL``, so both SQLite and
PostgreSQL still answer it from the partial index.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_REPLIES_ONLY = sa.text("reply_to IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_messages_reply_to", table_name="messages")
    op.create_index(
        "ix_messages_reply_to",
        "messages",
        ["reply_to"],
        sqlite_where=_REPLIES_ONLY,
        postgresql_where=_REPLIES_ONLY,
    )


def downgrade() -> None:
    op.drop_index("ix_messages_reply_to", table_name="messages")
    op.create_index("ix_messages_reply_to", "messages", ["reply_to"])
