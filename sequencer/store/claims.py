"""Claiming due steps.

The claim is the only way to own a step: an update stamps the locked enrollment with a
fresh token and a lease, and the claim returns everything its sender needs (a ``Job``).
Before DATA the sender commits ``data_at`` (the gate, ``store.hotpath``) — conditional on
the token and on the enrollment still being active and not suppressed — and that commit is
the point of no return: a step whose lease ran out with ``data_at`` set is ``unknown``
(flagged, never resent); one without it is claimed again and sent. What became of a step is
recorded by ``store.hotpath`` (a 250, in batches) and ``store.outcomes`` (everything else).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, exists, insert, or_, select, update

from sequencer.core.machine import EnrollmentState, Event, SendStatus
from sequencer.eventlog import EventRecord
from sequencer.store import events as stored_events
from sequencer.store import limits as mailbox_limits
from sequencer.store import pacing
from sequencer.store.db import AnyRow, Store
from sequencer.store.halting import drop_unsent
from sequencer.store.schema import OPEN_SEND, enrollments, mailboxes, sends, suppressions

ACTIVE = EnrollmentState.ACTIVE.value
# The hot-path statements are built once, with bind parameters: building a Core statement
# costs ~0.4 ms a time here, executing a prebuilt one ~0.05 ms. Same SQL, same conditions.
_PAUSED = select(mailboxes.c.name).where(mailboxes.c.paused)
@dataclass(frozen=True)
class Job:
    """Everything the sender needs, read by the claim itself (no second round trip).

    It travels through the broker as :meth:`payload`; what it says is only trusted under
    the gate, which re-checks the claim token, the state and the suppression list.
    """

    enrollment_id: int
    token: str
    email: str
    sequence: str
    mailbox: str
    step_index: int
    attempts: int
    vars: Mapping[str, str]
    timezone: str
    follow_up_by: date | None
    send_id: int
    message_id: str
    send_attempts: int
    thread_message_id: str | None
    thread_references: tuple[str, ...]
    thread_subject: str | None

    def payload(self) -> dict[str, Any]:
        """A JSON-safe form for a broker message."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["vars"] = dict(self.vars)
        data["thread_references"] = list(self.thread_references)
        data["follow_up_by"] = self.follow_up_by.isoformat() if self.follow_up_by else None
        return data

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> Job:
        values = dict(data)
        values["thread_references"] = tuple(values["thread_references"])
        fub = values["follow_up_by"]
        values["follow_up_by"] = date.fromisoformat(fub) if fub else None
        return cls(**values)


_CANDIDATES_COLUMNS = (
    enrollments.c.id, enrollments.c.mailbox, enrollments.c.sequence, enrollments.c.step_index,
    enrollments.c.email, enrollments.c.timezone, enrollments.c.vars, enrollments.c.attempts,
    enrollments.c.follow_up_by, sends.c.id.label("send_id"), sends.c.status.label("send_status"),
    sends.c.data_at, sends.c.message_id, sends.c.attempts.label("send_attempts"),
    suppressions.c.reason.label("suppressed"),
)
_CLAIM_MANY = (
    update(enrollments).where(enrollments.c.id == bindparam("eid"))
    .values(claim_token=bindparam("tok"), lease_until=bindparam("lease_until"),
            updated_at=bindparam("now"))
)
_NEW_SENDS = insert(sends).returning(sends.c.id, sort_by_parameter_order=True)
_RETRY_SENDS = (update(sends).where(sends.c.id == bindparam("sid"))
                .values(attempts=sends.c.attempts + 1))
_THREADS = (
    select(sends.c.enrollment_id, sends.c.message_id, sends.c.subject)
    .where(sends.c.enrollment_id.in_(bindparam("eids", expanding=True)),
           sends.c.status.in_([SendStatus.SENT.value, SendStatus.UNKNOWN.value]))
    .order_by(sends.c.enrollment_id, sends.c.step_index)
)


def claim_due(
    store: Store,
    now: datetime,
    *,
    limit: int,
    lease: timedelta,
    step_name: Callable[[str, int], str | None],
    new_message_id: Callable[[str], str],
    limits: Mapping[str, mailbox_limits.MailboxLimits] | None = None,
    mailboxes_known: Collection[str] | None = None,
    hold: pacing.Hold | None = None,
    lookback: pacing.Lookback | None = None,
) -> tuple[list[Job], list[EventRecord]]:
    """Claim up to ``limit`` due enrollments; create or reuse each one's send row.

    Returns the jobs to dispatch (everything their sender needs) and the events of steps
    found ``unknown`` or failed on the way. ``step_name(sequence, index)`` is None when the
    sequence or step no longer exists. Paused mailboxes and mailboxes at a limit
    (``store.limits``: daily, hourly, or a spaced mailbox whose turn is taken) are left out
    in SQL, so they never starve the others; a due enrollment of a suppressed address is
    ``stopped`` there and then (``_stop_suppressed``), so it leaves the due set. ``hold`` may
    hold a due step back (pacing, its window, a holiday): it is then due again later and a
    ``deferred`` event says why (see ``store.pacing``).

    The candidates are read with their current send row in one statement, locked (``FOR
    UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serializes writers),
    so the claims, the new send rows and the thread lookups then run as one batch each.
    """
    records: list[EventRecord] = []
    with store.write() as conn:
        records += _sweep(conn, now, lease)
        paused = set(conn.scalars(_PAUSED))
        budget = mailbox_limits.open_budgets(conn, now, limits or {}, lock=not store.is_sqlite,
                                             skip=paused)
        closed = paused | budget.closed
        candidates = select(*_CANDIDATES_COLUMNS).select_from(
            enrollments.outerjoin(sends, and_(sends.c.enrollment_id == enrollments.c.id,
                                              sends.c.step_index == enrollments.c.step_index))
            .outerjoin(suppressions, suppressions.c.email_key == enrollments.c.email_key)
        ).where(
            enrollments.c.state == ACTIVE,
            enrollments.c.next_due <= now,
            or_(enrollments.c.lease_until.is_(None), enrollments.c.lease_until < now),
        ).order_by(enrollments.c.next_due, enrollments.c.id).limit(limit)
        if closed:
            candidates = candidates.where(enrollments.c.mailbox.not_in(sorted(closed)))
        if not store.is_sqlite:
            candidates = candidates.with_for_update(skip_locked=True, of=enrollments)
        claimed: list[tuple[AnyRow, str, str | None]] = []  # (row, token, new message id)
        emails: set[str] = set()
        jobs: list[Job] = []
        for row in conn.execute(candidates).all():
            if row.suppressed is not None:
                records.append(_stop_suppressed(conn, row, now))
                continue
            existing = row.send_id is not None
            if not budget.allows(row.mailbox, new=not existing):
                continue
            if hold is not None and (not existing or row.data_at is None):
                if row.email in emails and lookback is not None \
                        and lookback(row.sequence) is not None:
                    # Paced, and another email to this prospect is in the batch: store
                    # the batch so far, so that pacing sees that one's send row.
                    jobs += _claim_batch(conn, claimed, now, lease, step_name)
                    claimed, emails = [], set()
                verdict = pacing.check(
                    conn, pacing.Candidate(row.id, row.email, row.sequence, row.mailbox,
                                           row.step_index, row.timezone, row.vars or {}),
                    now, hold, lookback or (lambda _name: None), lock=not store.is_sqlite,
                    step=step_name(row.sequence, row.step_index))
                if verdict is not True:
                    if isinstance(verdict, EventRecord):
                        records.append(verdict)
                    continue
            name = step_name(row.sequence, row.step_index)
            if existing and row.data_at is not None:
                records.append(_mark_unknown(conn, row, name, now))
                continue
            if name is None or (mailboxes_known is not None
                                and row.mailbox not in mailboxes_known):
                records.append(_pause_for_settings(conn, row, now, name is None))
                continue
            token = uuid.uuid4().hex
            claimed.append((row, token, None if existing else new_message_id(row.mailbox)))
            emails.add(row.email)
            budget.took(conn, row.mailbox, token, not existing, now, now + lease)
        jobs += _claim_batch(conn, claimed, now, lease, step_name)
        stored_events.add(conn, *records)
    return jobs, records


def _claim_batch(conn: Connection, claimed: list[tuple[AnyRow, str, str | None]],
                 now: datetime, lease: timedelta,
                 step_name: Callable[[str, int], str | None]) -> list[Job]:
    """Stamp the locked candidates, create or count their send rows, read their threads."""
    if not claimed:
        return []
    conn.execute(_CLAIM_MANY, [{"eid": row.id, "tok": token, "lease_until": now + lease,
                                "now": now} for row, token, _mid in claimed])
    fresh = [(row, mid) for row, _token, mid in claimed if mid is not None]
    new_ids: dict[int, int] = {}
    if fresh:
        result = conn.execute(_NEW_SENDS, [{
            "enrollment_id": row.id, "step_index": row.step_index,
            "step_name": step_name(row.sequence, row.step_index), "mailbox": row.mailbox,
            "message_id": mid, "status": SendStatus.CLAIMED.value, "attempts": 1,
            "created_at": now} for row, mid in fresh])
        new_ids = {row.id: send_id for (row, _mid), send_id
                   in zip(fresh, result.scalars().all(), strict=True)}
    retried = [{"sid": row.send_id} for row, _token, mid in claimed if mid is None]
    if retried:
        conn.execute(_RETRY_SENDS, retried)
    later = [row.id for row, _token, _mid in claimed if row.step_index > 0]
    threads: dict[int, list[AnyRow]] = {}
    for start in range(0, len(later), 500):
        for t in conn.execute(_THREADS, {"eids": later[start:start + 500]}):
            threads.setdefault(t.enrollment_id, []).append(t)
    jobs = []
    for row, token, mid in claimed:
        thread = threads.get(row.id, [])
        jobs.append(Job(
            enrollment_id=row.id, token=token, email=row.email, sequence=row.sequence,
            mailbox=row.mailbox, step_index=row.step_index, attempts=row.attempts,
            vars=row.vars or {}, timezone=row.timezone, follow_up_by=row.follow_up_by,
            send_id=new_ids[row.id] if mid is not None else row.send_id,
            message_id=mid if mid is not None else row.message_id,
            send_attempts=1 if mid is not None else row.send_attempts + 1,
            thread_message_id=thread[-1].message_id if thread else None,
            thread_references=tuple(t.message_id for t in thread),
            thread_subject=thread[0].subject if thread else None,
        ))
    return jobs


_ORPHANS = (
    select(sends.c.id, sends.c.message_id, sends.c.step_name, enrollments.c.id.label("eid"),
           enrollments.c.email, enrollments.c.mailbox, enrollments.c.sequence)
    .join(enrollments, enrollments.c.id == sends.c.enrollment_id)
    .where(OPEN_SEND, sends.c.data_at.is_not(None),
           sends.c.data_at < bindparam("stale"), enrollments.c.state != ACTIVE)
)
def _sweep(conn: Connection, now: datetime, lease: timedelta) -> list[EventRecord]:
    """Finish what nobody else will: a step past the gate whose sender died after its
    enrollment left ``active`` (``unknown``).

    Suppressed addresses are not swept here: adding a suppression halts that address's
    enrollments in its own transaction (``store.halting``, ``store.control``), so a tick
    never walks the active rows looking for them (244 ms a tick at 1M on SQLite)."""
    records: list[EventRecord] = []
    detail = "DATA went out but no reply was recorded; not resent"
    for row in conn.execute(_ORPHANS, {"stale": now - lease}).all():
        conn.execute(update(sends).where(sends.c.id == row.id).values(
            status=SendStatus.UNKNOWN.value, done_at=now, detail=detail))
        records.append(EventRecord(Event.UNKNOWN, now, email=row.email, mailbox=row.mailbox,
                                   sequence=row.sequence, step=row.step_name,
                                   message_id=row.message_id, detail=detail,
                                   enrollment_id=row.eid))
    return records


def _stop_suppressed(conn: Connection, row: AnyRow, now: datetime) -> EventRecord:
    """A due enrollment of a suppressed address: ``stopped``, never sent.

    Adding a suppression halts the address's enrollments at once, so this only finds one
    that escaped it (on PostgreSQL an import racing the suppression, each not seeing the
    other's uncommitted row; or rows from before this rule). It costs nothing per tick:
    only due rows are read, and the gate would refuse the send anyway.
    """
    conn.execute(update(enrollments).where(enrollments.c.id == row.id).values(
        state=EnrollmentState.STOPPED.value, next_due=None, claim_token=None,
        lease_until=None, updated_at=now))
    drop_unsent(conn, row.id)
    return EventRecord(Event.STOPPED, now, email=row.email, mailbox=row.mailbox,
                       sequence=row.sequence, detail=f"address suppressed: {row.suppressed}",
                       enrollment_id=row.id)


def _mark_unknown(conn: Connection, row: AnyRow, step: str | None,
                  now: datetime) -> EventRecord:
    detail = "DATA went out but no reply was recorded; not resent — check and resume or stop"
    conn.execute(update(sends).where(sends.c.id == row.send_id).values(
        status=SendStatus.UNKNOWN.value, done_at=now, detail=detail))
    conn.execute(update(enrollments).where(enrollments.c.id == row.id).values(
        state=EnrollmentState.PAUSED.value, claim_token=None, lease_until=None,
        flag=f"step {step or '?'}: outcome unknown", updated_at=now))
    return EventRecord(Event.UNKNOWN, now, email=row.email, mailbox=row.mailbox,
                       sequence=row.sequence, step=step, message_id=row.message_id,
                       detail=detail, enrollment_id=row.id)


def _pause_for_settings(conn: Connection, row: AnyRow, now: datetime,
                        missing_step: bool = True) -> EventRecord:
    """The step cannot go out because of the settings, not the prospect (its sequence or
    step is gone, its mailbox is not configured): paused with a flag, never failed."""
    if missing_step:
        reason = (f"sequence {row.sequence!r} has no step {row.step_index + 1} "
                  "under sequences/ (renamed, removed or shortened?)")
    else:
        reason = f"mailbox {row.mailbox!r} is not in the settings"
    flag = f"settings: {reason}"
    conn.execute(update(enrollments).where(enrollments.c.id == row.id).values(
        state=EnrollmentState.PAUSED.value, claim_token=None, lease_until=None, next_due=None,
        flag=flag, updated_at=now))
    drop_unsent(conn, row.id)
    return EventRecord(Event.PAUSED, now, email=row.email, mailbox=row.mailbox,
                       sequence=row.sequence, enrollment_id=row.id,
                       detail=f"{reason}: fix it, then `sequencer resume`")


def release(store: Store, job: Job, now: datetime) -> None:
    """Give the claim back untouched (the enrollment halted, or the process is stopping);
    never while another holder of the same claim is past the gate."""
    with store.write() as conn:
        released = conn.execute(
            update(enrollments)
            .where(enrollments.c.id == job.enrollment_id,
                   enrollments.c.claim_token == job.token,
                   ~exists().where(sends.c.id == job.send_id, sends.c.data_at.is_not(None)))
            .values(claim_token=None, lease_until=None, updated_at=now)).rowcount
        if released:
            drop_unsent(conn, job.enrollment_id)  # nothing went out: no record to keep
