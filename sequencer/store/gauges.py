"""What the metrics endpoint reads at each scrape: the due-now backlog and the mailboxes'
reply-detection lag. Each is one indexed query (the due-time index; the small
``mailbox_health`` table)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from sequencer.core.machine import EnrollmentState
from sequencer.store.db import Store
from sequencer.store.schema import enrollments, mailbox_health


@dataclass(frozen=True)
class Backlog:
    due: int  # active enrollments whose next step is due now
    oldest_s: float  # how long the oldest of them has been due (0 when none)


@dataclass(frozen=True)
class MailboxLag:
    name: str
    cursor_lag: int | None  # messages on the server past the watcher's cursor
    answer_age_s: float | None  # since the IMAP server last answered the watcher


def backlog(store: Store, now: datetime) -> Backlog:
    with store.read() as conn:
        count, oldest = conn.execute(
            select(func.count(), func.min(enrollments.c.next_due))
            .where(enrollments.c.state == EnrollmentState.ACTIVE.value,
                   enrollments.c.next_due <= now)).one()
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=now.tzinfo)
    return Backlog(int(count), max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)


def mailbox_lags(store: Store, now: datetime) -> list[MailboxLag]:
    with store.read() as conn:
        rows = conn.execute(select(mailbox_health.c.name, mailbox_health.c.cursor_lag,
                                   mailbox_health.c.last_answer_at)
                            .order_by(mailbox_health.c.name)).all()
    return [MailboxLag(r.name, r.cursor_lag,
                       (now - r.last_answer_at).total_seconds() if r.last_answer_at else None)
            for r in rows]
