"""Company stop in the store: halting everyone enrolled from one company.

A company is a registrable domain (``sequencer.core.company``). The enrollments at it are
found in SQL by the domain suffix of their ``email_key`` (``@acme.com`` or ``.acme.com``:
keys hold the IDNA 2008 A-label in lower case, as companies do), then checked one by one
with ``company_of``, which knows the public suffixes and the free-mail domains: so
``x@foo.s3.amazonaws.com`` is not at ``amazonaws.com``, and nobody at gmail.com is ever
anybody's colleague.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, exists, or_, select

from sequencer.core.machine import EnrollmentState, Event, SendStatus
from sequencer.eventlog import EventRecord
from sequencer.store import events as stored_events
from sequencer.store.halting import halt_enrollment
from sequencer.store.schema import enrollments, sends

_OPEN = (EnrollmentState.ACTIVE.value, EnrollmentState.PAUSED.value)


@dataclass(frozen=True)
class CompanyStop:
    """A reply from ``sender`` halts every open enrollment at ``company`` in ``sequences``.

    ``mailbox``: only enrollments of that mailbox (for a reply matched by its domain alone).
    ``needs_mailed``: halt only where someone at the company was sent a step of that
    sequence (a reply that is not in one of our threads must at least come from a company
    we wrote to). ``exclude``: the enrollment the reply itself already halted.
    """

    company: str
    sequences: frozenset[str]
    sender: str
    message_id: str | None
    company_of: Callable[[str], str | None]
    mailbox: str | None = None
    needs_mailed: bool = False
    exclude: int | None = None


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def halt_company(conn: Connection, stop: CompanyStop, now: datetime) -> list[EventRecord]:
    """Halt (as ``replied``) the open enrollments at ``stop.company``; one ``replied`` event
    each, naming the colleague who answered and their Message-ID. Returns those events
    (already stored)."""
    if not stop.sequences:
        return []
    patterns = [enrollments.c.email_key.like(f"%{sep}{_like(stop.company)}", escape="\\")
                for sep in ("@", ".")]
    mailed = exists().where(
        sends.c.enrollment_id == enrollments.c.id,
        sends.c.status.in_([SendStatus.SENT.value, SendStatus.UNKNOWN.value]))
    query = (select(enrollments.c.id, enrollments.c.email, enrollments.c.email_key,
                    enrollments.c.sequence, enrollments.c.mailbox, enrollments.c.state,
                    mailed.label("mailed"))
             .where(enrollments.c.sequence.in_(sorted(stop.sequences)), or_(*patterns))
             .order_by(enrollments.c.id))
    if stop.mailbox is not None:
        query = query.where(enrollments.c.mailbox == stop.mailbox)
    rows = [row for row in conn.execute(query).all()
            if stop.company_of(row.email_key) == stop.company]
    if stop.needs_mailed:
        wrote_to = {row.sequence for row in rows if row.mailed}
        rows = [row for row in rows if row.sequence in wrote_to]
    records: list[EventRecord] = []
    for row in rows:
        if row.id == stop.exclude or row.state not in _OPEN:
            continue
        if not halt_enrollment(conn, row.id, EnrollmentState.REPLIED, now):
            continue
        records.append(EventRecord(
            Event.REPLIED, now, email=row.email, mailbox=row.mailbox, sequence=row.sequence,
            message_id=stop.message_id,
            detail=f"company reply: {stop.sender} at {stop.company} answered",
            enrollment_id=row.id))
    stored_events.add(conn, *records)
    return records
