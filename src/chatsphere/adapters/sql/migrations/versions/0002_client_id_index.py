"""Index messages.client_message_id for the batch idempotency lookup.

The unique key (room_id, sender_id, client_message_id) cannot serve a lookup by
client_message_id alone, so each group commit scanned the whole table.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_messages_client_id", "messages", ["client_message_id"])


def downgrade() -> None:
    op.drop_index("ix_messages_client_id", table_name="messages")
