"""Enrolling prospects: batched, idempotent (a prospect is enrolled in a sequence once)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select

from sequencer.eventlog import EventRecord
from sequencer.machine import EnrollmentState, Event
from sequencer.prospects import Prospect, Rejected
from sequencer.spec import Sequence
from sequencer.store import events as stored_events
from sequencer.store.db import Store
from sequencer.store.schema import enrollments, prospects, suppressions

BATCH = 500


@dataclass(frozen=True)
class Enrolled:
    line: int
    email: str
    next_due: datetime


def enroll(
    store: Store,
    sequence: Sequence,
    rows: Iterable[Prospect | Rejected],
    now: datetime,
    first_due: Callable[[Prospect], datetime],
    default_timezone: str,
) -> Iterator[Enrolled | Rejected]:
    """Enroll every accepted row, reject those already enrolled or suppressed.

    Yields one result per input row, in order, a batch at a time (each batch is one
    transaction, so an interrupted import leaves whole batches and re-running it enrolls
    nobody twice).
    """
    batch: list[Prospect | Rejected] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            yield from _enroll_batch(store, sequence, batch, now, first_due, default_timezone)
            batch = []
    if batch:
        yield from _enroll_batch(store, sequence, batch, now, first_due, default_timezone)


def _enroll_batch(
    store: Store,
    sequence: Sequence,
    batch: list[Prospect | Rejected],
    now: datetime,
    first_due: Callable[[Prospect], datetime],
    default_timezone: str,
) -> list[Enrolled | Rejected]:
    emails = [p.email for p in batch if isinstance(p, Prospect)]
    results: list[Enrolled | Rejected] = []
    with store.write() as conn:
        known = dict(conn.execute(
            select(prospects.c.email, prospects.c.id).where(prospects.c.email.in_(emails))
        ).all())
        enrolled = set(conn.scalars(
            select(enrollments.c.email).where(enrollments.c.email.in_(emails),
                                              enrollments.c.sequence == sequence.name)))
        suppressed = dict(conn.execute(
            select(suppressions.c.email, suppressions.c.reason)
            .where(suppressions.c.email.in_(emails))).all())
        new_prospects = [e for e in dict.fromkeys(emails) if e not in known]
        if new_prospects:
            conn.execute(insert(prospects), [{"email": e, "created_at": now}
                                             for e in new_prospects])
            known.update(conn.execute(
                select(prospects.c.email, prospects.c.id)
                .where(prospects.c.email.in_(new_prospects))).all())
        values: list[dict[str, object]] = []
        records: list[EventRecord] = []
        for item in batch:
            if isinstance(item, Rejected):
                results.append(item)
                continue
            if item.email in suppressed:
                results.append(Rejected(item.line, item.email,
                                        f"suppressed ({suppressed[item.email]})"))
                continue
            if item.email in enrolled:
                results.append(Rejected(item.line, item.email,
                                        f"already enrolled in {sequence.name}"))
                continue
            due = first_due(item)
            values.append({
                "prospect_id": known[item.email], "email": item.email,
                "sequence": sequence.name, "mailbox": sequence.mailbox,
                "state": EnrollmentState.ACTIVE.value, "step_index": 0, "next_due": due,
                "attempts": 0, "timezone": item.timezone or default_timezone,
                "follow_up_by": item.follow_up_by, "vars": dict(item.fields),
                "enrolled_at": now, "updated_at": now,
            })
            enrolled.add(item.email)
            records.append(EventRecord(Event.ENROLLED, now, email=item.email,
                                       mailbox=sequence.mailbox, sequence=sequence.name))
            results.append(Enrolled(item.line, item.email, due))
        if values:
            conn.execute(insert(enrollments), values)
        stored_events.add(conn, *records)
    return results
