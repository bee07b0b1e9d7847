"""An index on the sends still open (status ``claimed``), for the scheduler's sweep.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

The sweep looks every tick for steps past the gate whose sender died; without this index
it read every send row (29 ms a tick at 100k enrollments on SQLite, growing with the
table). Partial: only the few open sends are in it, so it costs nothing once a send is
finished.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_OPEN = sa.text("status = 'claimed'")


def upgrade() -> None:
    op.create_index("ix_sends_open", "sends", ["data_at"], sqlite_where=_OPEN,
                    postgresql_where=_OPEN)


def downgrade() -> None:
    op.drop_index("ix_sends_open", table_name="sends")
