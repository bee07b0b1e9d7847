"""Steps whose outcome is ``unknown`` (DATA went out, no reply was recorded), and what a
look into the Sent folder decided about them (``usecases.resolving``).

Only a step that still holds its enrollment paused with its own ``outcome unknown`` flag is
looked for; once a person resumed or stopped the enrollment, their word stands.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, select, update

from sequencer.core.machine import EnrollmentState, SendStatus
from sequencer.eventlog import EventRecord
from sequencer.store import events as stored_events
from sequencer.store.db import Store
from sequencer.store.schema import enrollments, sends

PAUSED = EnrollmentState.PAUSED.value


def unknown_flag(step: str | None) -> str:
    """The flag an enrollment carries while one of its steps is ``unknown``."""
    return f"step {step or '?'}: outcome unknown"


@dataclass(frozen=True)
class UnknownStep:
    send_id: int
    enrollment_id: int
    email: str
    sequence: str
    step_index: int
    step_name: str
    message_id: str
    data_at: datetime
    timezone: str
    vars: Mapping[str, str]
    not_before: datetime | None


def unknown_steps(store: Store, mailbox: str) -> list[UnknownStep]:
    """The ``unknown`` steps of ``mailbox`` whose enrollments wait for an answer."""
    with store.read() as conn:
        rows = conn.execute(
            select(sends.c.id, sends.c.enrollment_id, sends.c.step_index, sends.c.step_name,
                   sends.c.message_id, sends.c.data_at, sends.c.done_at, enrollments.c.email,
                   enrollments.c.sequence, enrollments.c.flag, enrollments.c.timezone,
                   enrollments.c.vars, enrollments.c.not_before)
            .join(enrollments, and_(enrollments.c.id == sends.c.enrollment_id,
                                    enrollments.c.step_index == sends.c.step_index))
            .where(sends.c.mailbox == mailbox, sends.c.status == SendStatus.UNKNOWN.value,
                   enrollments.c.state == PAUSED)
            .order_by(sends.c.id)).all()
    return [UnknownStep(r.id, r.enrollment_id, r.email, r.sequence, r.step_index,
                        r.step_name, r.message_id, r.data_at or r.done_at, r.timezone,
                        r.vars or {}, r.not_before)
            for r in rows if r.flag == unknown_flag(r.step_name)]


def found_in_sent(store: Store, step: UnknownStep, now: datetime, *,
                  state: EnrollmentState, next_index: int, next_due: datetime | None,
                  records: list[EventRecord]) -> bool:
    """The step is in Sent: it was sent, and its enrollment goes on (``state``, from
    ``next_index`` at ``next_due``). False when someone acted on it meanwhile."""
    with store.write() as conn:
        moved = conn.execute(
            update(enrollments)
            .where(enrollments.c.id == step.enrollment_id, enrollments.c.state == PAUSED,
                   enrollments.c.step_index == step.step_index,
                   enrollments.c.flag == unknown_flag(step.step_name))
            .values(state=state.value, step_index=next_index, next_due=next_due, flag=None,
                    attempts=0, claim_token=None, lease_until=None, updated_at=now)).rowcount
        if moved != 1:
            return False
        conn.execute(update(sends).where(sends.c.id == step.send_id,
                                         sends.c.status == SendStatus.UNKNOWN.value)
                     .values(status=SendStatus.SENT.value,
                             detail="found in the Sent folder by its Message-ID"))
        stored_events.add(conn, *records)
    return True


def not_in_sent(store: Store, step: UnknownStep, now: datetime, flag: str,
                record: EventRecord) -> bool:
    """The grace period ended without the step in Sent: it stays flagged, now with
    ``flag``, and nobody looks for it again."""
    with store.write() as conn:
        changed = conn.execute(
            update(enrollments)
            .where(enrollments.c.id == step.enrollment_id, enrollments.c.state == PAUSED,
                   enrollments.c.flag == unknown_flag(step.step_name))
            .values(flag=flag, updated_at=now)).rowcount
        if changed == 1:
            stored_events.add(conn, record)
    return changed == 1
