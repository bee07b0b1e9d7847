"""Mailbox health: what each inbox watcher last reported, and why a mailbox was paused.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

``mailbox_health`` is written by the watcher (a few seconds apart, and at once when its
state changes) and read by ``status --mailboxes``, often in another process.
``mailboxes.pause_kind`` tells a pause for credentials (``auth``) from any other.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mailbox_health",
        sa.Column("name", sa.String(length=200), primary_key=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_answer_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cursor_lag", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("mailboxes") as batch:
        batch.add_column(sa.Column("pause_kind", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mailboxes") as batch:
        batch.drop_column("pause_kind")
    op.drop_table("mailbox_health")
