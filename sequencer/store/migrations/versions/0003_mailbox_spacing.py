"""Per-mailbox spacing: when the mailbox may send next, and which claim holds the turn.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mailboxes") as batch:
        batch.add_column(sa.Column("next_send_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("send_holder", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mailboxes") as batch:
        batch.drop_column("send_holder")
        batch.drop_column("next_send_at")
