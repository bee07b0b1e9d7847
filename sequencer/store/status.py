"""Read-side queries: what `status` shows, streamed.

``rows`` reads the enrollments in one ordered query with a server-side cursor (PostgreSQL)
or SQLite's own row-at-a-time stepping, a page of ``PAGE`` at a time, and reads the send
rows of each page by enrollment id (the ``(enrollment_id, step_index)`` index): memory
stays flat whatever the table's size. ``summary`` is two grouped counts in the database.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, func, select

from sequencer.core.addresses import address_key
from sequencer.core.machine import EnrollmentState, SendStatus
from sequencer.store.db import Store
from sequencer.store.schema import enrollments, inbound, sends

PAGE = 1000

_SENDS_OF = (
    select(sends.c.enrollment_id, sends.c.step_index, sends.c.step_name, sends.c.status)
    .where(sends.c.enrollment_id.in_(bindparam("ids", expanding=True)))
)
_NOTICE_COLUMNS = (inbound.c.enrollment_id, inbound.c.at, inbound.c.mailbox,
                   inbound.c.message_id, inbound.c.meaning, inbound.c.proof, inbound.c.action,
                   inbound.c.detail)
_NOTICES_OF = (
    select(*_NOTICE_COLUMNS)
    .where(inbound.c.review.is_(True),
           inbound.c.enrollment_id.in_(bindparam("ids", expanding=True)))
    .order_by(inbound.c.id)
)


@dataclass(frozen=True)
class Notice:
    """An inbound message that proved too little to act on fully: listed for review."""

    at: datetime
    mailbox: str
    message_id: str
    meaning: str | None
    proof: str | None
    action: str | None
    detail: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat().replace("+00:00", "Z"), "mailbox": self.mailbox,
                "message_id": self.message_id, "kind": self.meaning, "proof": self.proof,
                "action": self.action, "detail": self.detail}


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
    unverified: tuple[Notice, ...] = ()

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
            "unverified": [n.as_dict() for n in self.unverified],
        }


def _query(email: str | None, sequence: str | None, state: str | None,
           limit: int | None) -> Select[Any]:
    query = (
        select(enrollments.c.id, enrollments.c.email, enrollments.c.sequence,
               enrollments.c.mailbox, enrollments.c.state, enrollments.c.next_due,
               enrollments.c.flag)
        .order_by(enrollments.c.sequence, enrollments.c.id)
    )
    if email:
        query = query.where(enrollments.c.email_key == address_key(email))
    if sequence:
        query = query.where(enrollments.c.sequence == sequence)
    if state:
        query = query.where(enrollments.c.state == state)
    if limit is not None:
        query = query.limit(limit)
    return query


def rows(store: Store, *, email: str | None = None, sequence: str | None = None,
         state: str | None = None, limit: int | None = None
         ) -> Generator[StatusRow, None, None]:
    """Every enrollment matching the filters, ordered by sequence then enrollment, as a
    stream (consume it or close it: it holds a read transaction while it runs)."""
    sent_status, unknown_status = SendStatus.SENT.value, SendStatus.UNKNOWN.value
    active = EnrollmentState.ACTIVE.value
    with store.read() as conn:
        result = conn.execution_options(stream_results=True, yield_per=PAGE).execute(
            _query(email, sequence, state, limit))
        for page in result.partitions(PAGE):
            sent: dict[int, list[tuple[int, str]]] = {}
            unknown: dict[int, int] = {}
            ids = [r[0] for r in page]
            for eid, index, name, status in conn.execute(_SENDS_OF, {"ids": ids}):
                if status == sent_status:
                    sent.setdefault(eid, []).append((index, name))
                elif status == unknown_status:
                    unknown[eid] = unknown.get(eid, 0) + 1
            notices: dict[int, list[Notice]] = {}
            for eid, *fields in conn.execute(_NOTICES_OF, {"ids": ids}):
                notices.setdefault(eid, []).append(Notice(*fields))
            for eid, address, seq, mailbox, now_state, due, flag in page:
                done = sent.get(eid, ())
                yield StatusRow(address, seq, mailbox, now_state, len(done),
                                max(done)[1] if done else None,
                                due if now_state == active else None, flag,
                                unknown.get(eid, 0), tuple(notices.get(eid, ())))


def status(store: Store, *, email: str | None = None,
           sequence: str | None = None) -> list[StatusRow]:
    """``rows`` as a list (for small results)."""
    return list(rows(store, email=email, sequence=sequence))


@dataclass
class StepCounts:
    index: int
    name: str | None = None
    waiting: int = 0  # active enrollments whose next step this is
    sends: dict[str, int] = field(default_factory=dict)  # send status -> count

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.index + 1, "name": self.name, "waiting": self.waiting,
                **{s.value: self.sends.get(s.value, 0) for s in SendStatus}}


@dataclass
class SequenceCounts:
    sequence: str
    states: dict[str, int] = field(default_factory=dict)
    steps: dict[int, StepCounts] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.states.values())

    def step(self, index: int) -> StepCounts:
        return self.steps.setdefault(index, StepCounts(index))

    def as_dict(self) -> dict[str, Any]:
        return {"sequence": self.sequence, "total": self.total,
                "states": {s.value: self.states.get(s.value, 0) for s in EnrollmentState},
                "steps": [self.steps[i].as_dict() for i in sorted(self.steps)]}


def summary(store: Store, *, sequence: str | None = None,
            state: str | None = None) -> list[SequenceCounts]:
    """Counts per sequence and state, and per step (active enrollments waiting for it, and
    its sends by status), in two grouped queries."""
    by_state = (select(enrollments.c.sequence, enrollments.c.state, enrollments.c.step_index,
                       func.count().label("n"))
                .group_by(enrollments.c.sequence, enrollments.c.state,
                          enrollments.c.step_index))
    by_step = (select(enrollments.c.sequence, sends.c.step_index,
                      func.max(sends.c.step_name).label("name"), sends.c.status,
                      func.count().label("n"))
               .join(enrollments, enrollments.c.id == sends.c.enrollment_id)
               .group_by(enrollments.c.sequence, sends.c.step_index, sends.c.status))
    for column, value in ((enrollments.c.sequence, sequence), (enrollments.c.state, state)):
        if value:
            by_state, by_step = by_state.where(column == value), by_step.where(column == value)
    found: dict[str, SequenceCounts] = {}
    with store.read() as conn:
        for r in conn.execute(by_state):
            counts = found.setdefault(r.sequence, SequenceCounts(r.sequence))
            counts.states[r.state] = counts.states.get(r.state, 0) + r.n
            if r.state == EnrollmentState.ACTIVE.value:
                counts.step(r.step_index).waiting += r.n
        for r in conn.execute(by_step):
            step = found.setdefault(r.sequence, SequenceCounts(r.sequence)).step(r.step_index)
            step.name = step.name or r.name
            step.sends[r.status] = r.n
    return [found[name] for name in sorted(found)]
