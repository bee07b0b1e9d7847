"""Holding a due step back at claim time (pacing, a window, a holiday), and what a prospect
has been sent, which pacing counts.

Runs inside the claim's transaction. On PostgreSQL the prospect's row is locked first
(``FOR UPDATE SKIP LOCKED``), so two schedulers can never both pass the pacing check for
one prospect in two sequences: the second skips the prospect this tick and, on the next,
sees the first one's claimed send. On SQLite every write transaction is serialized already.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, bindparam, or_, select, update

from sequencer.core.addresses import address_key
from sequencer.core.machine import EnrollmentState, Event, SendStatus
from sequencer.eventlog import EventRecord
from sequencer.store.schema import enrollments, prospects, sends


@dataclass(frozen=True)
class Candidate:
    """A due enrollment the scheduler is about to claim."""

    enrollment_id: int
    email: str
    sequence: str
    mailbox: str
    step_index: int
    timezone: str
    vars: Mapping[str, str]


@dataclass(frozen=True)
class Held:
    """Not now: the step is due again at ``until``; ``detail`` says why (for the log)."""

    until: datetime
    detail: str


# (candidate, the prospect's other emails) -> Held, or None to claim it now
Hold = Callable[[Candidate, list[datetime]], Held | None]
# sequence -> how far back pacing looks (None: the sequence has no pacing)
Lookback = Callable[[str], timedelta | None]

_SENT = [SendStatus.SENT.value, SendStatus.UNKNOWN.value]
_HISTORY = (
    select(sends.c.enrollment_id, sends.c.step_index, sends.c.status, sends.c.done_at,
           sends.c.data_at, sends.c.created_at, enrollments.c.next_due)
    .join(enrollments, enrollments.c.id == sends.c.enrollment_id)
    .where(enrollments.c.email_key == bindparam("key"),
           or_(and_(sends.c.status.in_(_SENT), sends.c.created_at >= bindparam("since")),
               sends.c.status == SendStatus.CLAIMED.value))
)
_LOCK = (select(prospects.c.id).where(prospects.c.email_key == bindparam("key"))
         .with_for_update(skip_locked=True))
_DEFER = (
    update(enrollments)
    .where(enrollments.c.id == bindparam("eid"),
           enrollments.c.state == EnrollmentState.ACTIVE.value,
           or_(enrollments.c.lease_until.is_(None),
               enrollments.c.lease_until < bindparam("now")))
    .values(next_due=bindparam("until"), updated_at=bindparam("now"))
)


@dataclass(frozen=True)
class Email:
    """One email to the prospect, sent or on its way, for pacing."""

    enrollment_id: int
    step_index: int
    at: datetime


def history(conn: Connection, email: str, now: datetime, since: datetime) -> list[Email]:
    """The prospect's emails (all sequences) sent since ``since``, and those on their way:
    a claimed send counts as going out at its due time, or now if that is past."""
    emails: list[Email] = []
    for row in conn.execute(_HISTORY, {"key": address_key(email), "since": since}):
        if row.status == SendStatus.CLAIMED.value:
            at = max(now, row.next_due or now)
        else:
            at = row.done_at or row.data_at or row.created_at
        emails.append(Email(row.enrollment_id, row.step_index, at))
    return emails


def check(conn: Connection, candidate: Candidate, now: datetime, hold: Hold,
          lookback: Lookback, *, lock: bool, step: str | None = None) -> EventRecord | bool:
    """Whether ``candidate`` may be claimed now: True, False (another scheduler holds the
    prospect: skip it this tick), or the ``deferred`` event of a step held back (its
    ``next_due`` moved to when it may go)."""
    back = lookback(candidate.sequence)
    times: list[datetime] = []
    if back is not None:
        if lock and conn.execute(_LOCK, {"key": address_key(candidate.email)}).first() is None:
            return False
        times = [email.at for email in history(conn, candidate.email, now, now - back)
                 if (email.enrollment_id, email.step_index)
                 != (candidate.enrollment_id, candidate.step_index)]
    held = hold(candidate, times)
    if held is None:
        return True
    conn.execute(_DEFER, {"eid": candidate.enrollment_id, "until": held.until, "now": now})
    return EventRecord(Event.DEFERRED, now, email=candidate.email, mailbox=candidate.mailbox,
                       sequence=candidate.sequence, step=step, detail=held.detail,
                       enrollment_id=candidate.enrollment_id)
