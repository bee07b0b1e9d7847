"""Read-side queries: what `status` shows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from sequencer.core.machine import SendStatus
from sequencer.store.db import Store
from sequencer.store.schema import enrollments, sends


@dataclass(frozen=True)
class StatusRow:
    email: str
    sequence: str
    mailbox: str
    state: str
    steps_sent: int
    last_step: str | None
    next_due: datetime | None
    flag: str | None
    unknown_steps: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "sequence": self.sequence,
            "mailbox": self.mailbox,
            "state": self.state,
            "steps_sent": self.steps_sent,
            "last_step": self.last_step,
            "next_due": (self.next_due.isoformat().replace("+00:00", "Z")
                         if self.next_due else None),
            "flag": self.flag,
            "unknown_steps": self.unknown_steps,
        }


def status(store: Store, *, email: str | None = None,
           sequence: str | None = None) -> list[StatusRow]:
    sent = (
        select(sends.c.enrollment_id,
               func.count().label("n"),
               func.max(sends.c.step_index).label("last_index"))
        .where(sends.c.status == SendStatus.SENT.value)
        .group_by(sends.c.enrollment_id).subquery()
    )
    unknown = (
        select(sends.c.enrollment_id, func.count().label("u"))
        .where(sends.c.status == SendStatus.UNKNOWN.value)
        .group_by(sends.c.enrollment_id).subquery()
    )
    last = select(sends.c.step_name).where(
        sends.c.enrollment_id == enrollments.c.id,
        sends.c.step_index == sent.c.last_index).scalar_subquery()
    query = (
        select(enrollments.c.email, enrollments.c.sequence, enrollments.c.mailbox,
               enrollments.c.state, enrollments.c.next_due, enrollments.c.flag,
               func.coalesce(sent.c.n, 0).label("steps_sent"),
               func.coalesce(unknown.c.u, 0).label("unknown_steps"),
               last.label("last_step"))
        .outerjoin(sent, sent.c.enrollment_id == enrollments.c.id)
        .outerjoin(unknown, unknown.c.enrollment_id == enrollments.c.id)
        .order_by(enrollments.c.sequence, enrollments.c.id)
    )
    if email:
        query = query.where(enrollments.c.email == email)
    if sequence:
        query = query.where(enrollments.c.sequence == sequence)
    with store.read() as conn:
        rows = conn.execute(query).all()
    return [
        StatusRow(email=r.email, sequence=r.sequence, mailbox=r.mailbox, state=r.state,
                  steps_sent=r.steps_sent, last_step=r.last_step,
                  next_due=r.next_due if r.state == "active" else None,
                  flag=r.flag, unknown_steps=r.unknown_steps)
        for r in rows
    ]
