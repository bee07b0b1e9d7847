"""Address identity: an ``email_key`` beside every stored address; duplicates merged.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Before this revision an address was compared as spelled, so ``Ann@X.com`` and ``ann@x.com``
could be two prospects, two enrollments in one sequence, two suppressions. This revision
stores ``address_key`` (``sequencer.core.addresses``) in ``email_key`` and merges what it
makes equal, keeping every event:

- enrollments of one key in one sequence become one. The survivor is the one that must
  send least: the most final state (unsubscribed, bounced, replied, stopped, failed,
  completed, paused, active, in that order), then the furthest step, then the oldest. It
  keeps its own state, step and spelling. The others' events and sends are moved to it; a
  send for a step the survivor has sent too moves to ``merged_sends`` (one send row per
  step), where its Message-ID still finds the survivor;
- prospects of one key become the oldest one (its spelling is kept);
- suppressions of one key become the oldest one, with every reason kept.

A later change to ``address_key`` needs a new revision that recomputes the keys.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from alembic import op

from sequencer.core.addresses import AddressError, address_key

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The survivor of merged enrollments: the state that sends least wins.
_FINALITY = {state: rank for rank, state in enumerate(
    ("active", "paused", "completed", "failed", "stopped", "replied", "bounced",
     "unsubscribed"))}
_SEND_COLUMNS = ("message_id", "step_index", "step_name", "mailbox", "status", "attempts",
                 "created_at", "data_at", "done_at", "smtp_code", "detail", "subject")


def _key(email: str) -> str:
    try:
        return address_key(email)
    except AddressError:
        return email.strip().casefold()  # not an address at all: kept apart, as spelled


def upgrade() -> None:
    bind = op.get_bind()
    op.add_column("prospects", sa.Column("email_key", sa.String(length=320), nullable=True))
    op.add_column("enrollments", sa.Column("email_key", sa.String(length=320), nullable=True))
    for table in ("prospects", "enrollments"):
        rows = bind.execute(sa.text(f"SELECT id, email FROM {table}")).all()
        _executemany(bind, f"UPDATE {table} SET email_key = :k WHERE id = :i",
                     [{"k": _key(r.email), "i": r.id} for r in rows])
    op.create_table(
        "merged_sends",
        sa.Column("message_id", sa.String(length=400), nullable=False),
        sa.Column("enrollment_id", sa.Integer(), nullable=False),
        sa.Column("merged_from", sa.Integer(), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("step_name", sa.String(length=200), nullable=False),
        sa.Column("mailbox", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("smtp_code", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["enrollment_id"], ["enrollments.id"]),
        sa.PrimaryKeyConstraint("message_id"),
    )
    op.create_index("ix_merged_sends_enrollment", "merged_sends", ["enrollment_id"])
    _merge_enrollments(bind)
    _merge_prospects(bind)
    _rebuild_suppressions(bind)

    uq_email = _unique_on(bind, "prospects", ["email"]) or "uq_prospects_email"
    with op.batch_alter_table(
            "prospects", naming_convention={"uq": "uq_%(table_name)s_%(column_0_name)s"}) as batch:
        batch.alter_column("email_key", existing_type=sa.String(length=320), nullable=False)
        batch.drop_constraint(uq_email, type_="unique")
        batch.create_unique_constraint("uq_prospects_email_key", ["email_key"])
    with op.batch_alter_table("enrollments") as batch:
        batch.alter_column("email_key", existing_type=sa.String(length=320), nullable=False)
        batch.drop_index("ix_enrollments_email")
        batch.create_index("ix_enrollments_email_key", ["email_key"])


def _merge_enrollments(bind: sa.Connection) -> None:
    rows = bind.execute(sa.text(
        "SELECT id, email_key, sequence, state, step_index FROM enrollments ORDER BY id")).all()
    groups: dict[tuple[str, str], list[sa.Row[tuple[object, ...]]]] = defaultdict(list)
    for row in rows:
        groups[(row.email_key, row.sequence)].append(row)
    for group in groups.values():
        if len(group) < 2:
            continue
        survivor = max(group, key=lambda r: (_FINALITY.get(r.state, 0), r.step_index, -r.id))
        losers = [r.id for r in group if r.id != survivor.id]
        taken = set(bind.scalars(sa.text(
            "SELECT step_index FROM sends WHERE enrollment_id = :e"), {"e": survivor.id}))
        sends = bind.execute(sa.text(
            f"SELECT id, enrollment_id, {', '.join(_SEND_COLUMNS)} FROM sends "
            "WHERE enrollment_id IN :losers ORDER BY id").bindparams(
                sa.bindparam("losers", expanding=True)), {"losers": losers}).all()
        for send in sends:
            if send.step_index in taken:
                values = {name: getattr(send, name) for name in _SEND_COLUMNS}
                bind.execute(sa.text(
                    f"INSERT INTO merged_sends (enrollment_id, merged_from, "
                    f"{', '.join(_SEND_COLUMNS)}) VALUES (:enrollment_id, :merged_from, "
                    f"{', '.join(':' + n for n in _SEND_COLUMNS)})"),
                    {**values, "enrollment_id": survivor.id, "merged_from": send.enrollment_id})
                bind.execute(sa.text("DELETE FROM sends WHERE id = :i"), {"i": send.id})
            else:
                bind.execute(sa.text("UPDATE sends SET enrollment_id = :s WHERE id = :i"),
                             {"s": survivor.id, "i": send.id})
                taken.add(send.step_index)
        _repoint(bind, "events", "enrollment_id", survivor.id, losers)
        _repoint(bind, "merged_sends", "enrollment_id", survivor.id, losers)
        _delete(bind, "enrollments", losers)


def _merge_prospects(bind: sa.Connection) -> None:
    rows = bind.execute(sa.text("SELECT id, email_key FROM prospects ORDER BY id")).all()
    groups: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        groups[row.email_key].append(row.id)
    for ids in groups.values():
        if len(ids) > 1:
            _repoint(bind, "enrollments", "prospect_id", ids[0], ids[1:])
            _delete(bind, "prospects", ids[1:])


def _rebuild_suppressions(bind: sa.Connection) -> None:
    """Keyed by ``email_key`` now (the primary key changes, so the table is made anew)."""
    rows = bind.execute(sa.text("SELECT email, reason, at FROM suppressions ORDER BY at")).all()
    merged: dict[str, dict[str, object]] = {}
    for row in rows:
        key = _key(row.email)
        first = merged.get(key)
        if first is None:
            merged[key] = {"k": key, "e": row.email, "r": row.reason, "a": row.at}
        elif row.reason not in str(first["r"]):
            first["r"] = f"{first['r']}; as {row.email}: {row.reason}"
    op.drop_table("suppressions")
    op.create_table(
        "suppressions",
        sa.Column("email_key", sa.String(length=320), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("email_key"),
    )
    _executemany(bind, "INSERT INTO suppressions (email_key, email, reason, at) "
                       "VALUES (:k, :e, :r, :a)", list(merged.values()))


def _repoint(bind: sa.Connection, table: str, column: str, to: int, ids: Sequence[int]) -> None:
    bind.execute(sa.text(f"UPDATE {table} SET {column} = :to WHERE {column} IN :ids")
                 .bindparams(sa.bindparam("ids", expanding=True)), {"to": to, "ids": list(ids)})


def _delete(bind: sa.Connection, table: str, ids: Sequence[int]) -> None:
    bind.execute(sa.text(f"DELETE FROM {table} WHERE id IN :ids")
                 .bindparams(sa.bindparam("ids", expanding=True)), {"ids": list(ids)})


def _executemany(bind: sa.Connection, sql: str, params: list[dict[str, object]]) -> None:
    for start in range(0, len(params), 5000):
        chunk = params[start:start + 5000]
        if chunk:
            bind.execute(sa.text(sql), chunk)


def _unique_on(bind: sa.Connection, table: str, columns: Iterable[str]) -> str | None:
    wanted = list(columns)
    for constraint in sa.inspect(bind).get_unique_constraints(table):
        if constraint["column_names"] == wanted:
            return constraint["name"]
    return None


def downgrade() -> None:
    """Back to spelling-keyed tables; the merges stay merged (what was merged was one person)."""
    bind = op.get_bind()
    with op.batch_alter_table("enrollments") as batch:
        batch.drop_index("ix_enrollments_email_key")
        batch.create_index("ix_enrollments_email", ["email"])
        batch.drop_column("email_key")
    with op.batch_alter_table("prospects") as batch:
        batch.drop_constraint("uq_prospects_email_key", type_="unique")
        batch.create_unique_constraint("uq_prospects_email", ["email"])
        batch.drop_column("email_key")
    rows = bind.execute(sa.text("SELECT email, reason, at FROM suppressions")).all()
    op.drop_table("suppressions")
    op.create_table(
        "suppressions",
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("email"),
    )
    _executemany(bind, "INSERT INTO suppressions (email, reason, at) VALUES (:e, :r, :a)",
                 [{"e": r.email, "r": r.reason, "a": r.at} for r in rows])
    op.drop_index("ix_merged_sends_enrollment", table_name="merged_sends")
    op.drop_table("merged_sends")
