"""Drop ix_messages_client_id: the idempotency lookup now uses the unique key.

The batch looks stored client ids up as (room_id, sender_id, client_message_id)
triples, which the unique key uq_messages_client_id serves. The index on
client_message_id alone (0002) had become one more B-tree for every insert to
update, on a random page, since client ids are random.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_messages_client_id", table_name="messages")


def downgrade() -> None:
    op.create_index("ix_messages_client_id", "messages", ["client_message_id"])
