"""Inbound evidence: what each inbound message proved and what it changed.

Revision ID: 0006
Revises: 0005w
Create Date: 2026-12-01

The decay rule counts proven soft bounces per address; `status` lists the notices that
proved nothing for a human to review. Older rows keep NULL in the new columns.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005w"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("email_key", sa.String(length=320)),
    ("enrollment_id", sa.Integer()),
    ("meaning", sa.String(length=20)),
    ("proof", sa.String(length=20)),
    ("action", sa.String(length=20)),
    ("review", sa.Boolean()),
    ("about", sa.String(length=400)),
    ("detail", sa.Text()),
)


def upgrade() -> None:
    for name, kind in _COLUMNS:
        op.add_column("inbound", sa.Column(name, kind, nullable=True))
    op.create_index("ix_inbound_email_key_at", "inbound", ["email_key", "at"])
    op.create_index("ix_inbound_review", "inbound", ["review", "enrollment_id"])


def downgrade() -> None:
    op.drop_index("ix_inbound_review", table_name="inbound")
    op.drop_index("ix_inbound_email_key_at", table_name="inbound")
    with op.batch_alter_table("inbound") as batch:
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
