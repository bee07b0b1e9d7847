"""Webhooks: the event id (events.uid), the subscriptions and the durable outbox.

Revision ID: 0005w
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005w"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("uid", sa.String(length=32), nullable=True))
    op.create_table(
        "webhook_subscriptions",
        sa.Column("url", sa.String(length=2000), primary_key=True),
        sa.Column("event", sa.String(length=20), primary_key=True),
    )
    op.create_table(
        "webhook_outbox",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("event_uid", sa.String(length=32), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("event", sa.String(length=20), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.UniqueConstraint("event_uid", "url", name="uq_webhook_outbox_event_url"),
    )
    op.create_index("ix_webhook_outbox_pending", "webhook_outbox", ["delivered_at", "next_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_outbox_pending", table_name="webhook_outbox")
    op.drop_table("webhook_outbox")
    op.drop_table("webhook_subscriptions")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("uid")
