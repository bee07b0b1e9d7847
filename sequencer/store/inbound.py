"""The inbound side of the store: watcher cursors, seen messages, matching, effects."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, desc, func, insert, or_, select, update

from sequencer.core.addresses import AddressError, address_key
from sequencer.core.machine import EnrollmentState, Inbound, SendStatus
from sequencer.core.trust import Proof, decayed
from sequencer.errors import StoreConflict
from sequencer.eventlog import EventRecord
from sequencer.mail.watching import NO_CURSOR, Cursor
from sequencer.store import events as stored_events
from sequencer.store.colleagues import CompanyStop, halt_company
from sequencer.store.db import AnyRow, Store
from sequencer.store.halting import add_suppression, halt_address, halt_enrollment
from sequencer.store.schema import enrollments, inbound, mailboxes, merged_sends, sends

ACTIVE = EnrollmentState.ACTIVE.value


class DbCursorStore:
    """The watcher's cursor (UIDVALIDITY, last UID) per mailbox, in the database."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def load(self, mailbox: str) -> Cursor:
        with self.store.read() as conn:
            row = conn.execute(select(mailboxes.c.uidvalidity, mailboxes.c.last_uid)
                               .where(mailboxes.c.name == mailbox)).first()
        if row is None:
            return NO_CURSOR
        return Cursor(row.uidvalidity, row.last_uid or 0)

    def save(self, mailbox: str, cursor: Cursor) -> None:
        with self.store.write() as conn:
            done = conn.execute(update(mailboxes).where(mailboxes.c.name == mailbox).values(
                uidvalidity=cursor.uidvalidity, last_uid=cursor.last_uid)).rowcount
            if not done:
                conn.execute(insert(mailboxes).values(
                    name=mailbox, uidvalidity=cursor.uidvalidity, last_uid=cursor.last_uid,
                    paused=False))


@dataclass(frozen=True)
class Target:
    enrollment_id: int
    email: str
    sequence: str
    mailbox: str
    state: str
    step_index: int
    next_due: datetime | None
    timezone: str
    how: str  # how the message was matched
    vars: Mapping[str, str] = field(default_factory=dict)  # the row's columns
    via: str | None = None  # our Message-ID it was matched by ("message-id")


@dataclass(frozen=True)
class Seen:
    """The inbound message an effect comes from: recorded in the same transaction, so a
    message is handled exactly once per mailbox (a re-delivery is a no-op), with what it
    proved and did (``core.trust``)."""

    mailbox: str
    key: str  # its Message-ID, or a digest of its bytes
    kind: str
    email_key: str | None = None
    enrollment_id: int | None = None
    meaning: str | None = None
    proof: str | None = None
    action: str | None = None
    review: bool = False
    about: str | None = None
    detail: str | None = None


def _seen_before(conn: Connection, seen: Seen) -> bool:
    return bool(conn.scalar(select(inbound.c.id).where(inbound.c.mailbox == seen.mailbox,
                                                       inbound.c.message_id == seen.key)))


def _first_seen(conn: Connection, seen: Seen, now: datetime) -> bool:
    if _seen_before(conn, seen):
        return False
    conn.execute(insert(inbound).values(
        mailbox=seen.mailbox, message_id=seen.key, kind=seen.kind, at=now,
        email_key=seen.email_key, enrollment_id=seen.enrollment_id, meaning=seen.meaning,
        proof=seen.proof, action=seen.action, review=seen.review, about=seen.about,
        detail=seen.detail))
    return True


def match(store: Store, mailbox: str, *, references: Iterable[str] = (),
          original: str | None = None, address: str | None = None) -> Target | None:
    """The enrollment an inbound message is about: by the Message-IDs it refers to (ours),
    then by the address (the failed recipient of a bounce, or the sender of a reply)
    among this mailbox's enrollments — the most recent active one first."""
    cols = (enrollments.c.id, enrollments.c.email, enrollments.c.sequence,
            enrollments.c.mailbox, enrollments.c.state, enrollments.c.step_index,
            enrollments.c.next_due, enrollments.c.timezone, enrollments.c.vars)
    ids = [i for i in ([original] if original else []) + list(references) if i]
    key = _key_or_none(address) if address else None
    with store.read() as conn:
        for table in (sends, merged_sends) if ids else ():
            row = conn.execute(
                select(*cols, table.c.message_id.label("via"))
                .join(table, table.c.enrollment_id == enrollments.c.id)
                .where(table.c.message_id.in_(ids)).order_by(desc(table.c.step_index))
            ).first()
            if row is not None:
                return _target(row, "message-id", row.via)
        if key is not None:
            found = conn.execute(
                select(*cols).where(enrollments.c.email_key == key,
                                    enrollments.c.mailbox == mailbox)
                .order_by(desc(enrollments.c.state == ACTIVE), desc(enrollments.c.id))
            ).first()
            if found is not None:
                return _target(found, "address")
    return None


def _key_or_none(address: str) -> str | None:
    try:
        return address_key(address)
    except AddressError:
        return None


def _target(row: AnyRow, how: str, via: str | None = None) -> Target:
    r = row
    return Target(r.id, r.email, r.sequence, r.mailbox, r.state,
                  r.step_index, r.next_due, r.timezone, how, r.vars or {}, via)


def mailed(store: Store, mailbox: str, email: str) -> bool:
    """Has ``mailbox`` ever sent (or maybe sent) a step to ``email``, in any spelling?"""
    with store.read() as conn:
        return conn.scalar(
            select(sends.c.id).join(enrollments, enrollments.c.id == sends.c.enrollment_id)
            .where(enrollments.c.email_key == address_key(email), sends.c.mailbox == mailbox,
                   sends.c.status.in_([SendStatus.SENT.value, SendStatus.UNKNOWN.value]))
            .limit(1)) is not None


def soft_bounce(store: Store, target: Target, seen: Seen, now: datetime, *, count: int,
                within: timedelta,
                record: Callable[[int, bool], EventRecord]) -> EventRecord | None:
    """A proven soft bounce, and the decay rule (``core.trust.decayed``): once ``count``
    sends to the address soft-bounced within ``within`` (this one included), the address
    is suppressed and its enrollments halt as ``bounced``. ``record(n, suppressed)`` makes
    the event. None when the message was handled before."""
    with store.write() as conn:
        if not _first_seen(conn, seen, now):
            return None
        sent = func.coalesce(inbound.c.about, inbound.c.message_id)
        times = [at for _, at in conn.execute(
            select(sent, func.max(inbound.c.at))
            .where(inbound.c.email_key == seen.email_key,
                   inbound.c.meaning == Inbound.SOFT_BOUNCE.value,
                   inbound.c.proof.in_([Proof.MESSAGE_ID.value, Proof.DMARC.value]),
                   inbound.c.at >= now - within)
            .group_by(sent)).all()]
        suppressed = decayed(times, now, count=count, within=within)
        event = record(len(times), suppressed)
        if suppressed:
            bounced = EnrollmentState.BOUNCED
            halt_enrollment(conn, target.enrollment_id, bounced, now)
            add_suppression(conn, target.email, event.detail or "soft bounces", now)
            halt_address(conn, target.email, bounced, now)
        stored_events.add(conn, event)
    return event


@dataclass(frozen=True)
class Applied:
    """An inbound message's effect, committed; with the enrollments its company stop
    halted (their events are stored, for the caller to log)."""

    colleagues: tuple[EventRecord, ...] = ()


def halt(store: Store, target: Target, state: EnrollmentState, now: datetime,
         record: EventRecord, seen: Seen, *, suppress: str | None = None,
         company: CompanyStop | None = None) -> Applied | None:
    """Move the enrollment (and, when suppressing, every active or paused enrollment of that
    address) to ``state``, and with ``company`` every open enrollment at that company. The
    send path re-checks the state inside its claim, so nothing is sent after this commits.
    None when the message was handled before."""
    with store.write() as conn:
        if not _first_seen(conn, seen, now):
            return None
        halt_enrollment(conn, target.enrollment_id, state, now)
        if suppress:
            add_suppression(conn, target.email, suppress, now)
            halt_address(conn, target.email, state, now)
        stored_events.add(conn, record)
        colleagues = halt_company(conn, company, now) if company is not None else []
    return Applied(tuple(colleagues))


def halt_colleagues(store: Store, company: CompanyStop, seen: Seen,
                    now: datetime) -> Applied | None:
    """A company stop for a reply that matched no enrollment of its own (a colleague who is
    not enrolled). The message is recorded as seen only when it halted someone; None when
    it halted nobody or was handled before."""
    with store.write() as conn:
        if _seen_before(conn, seen):
            return None
        colleagues = halt_company(conn, company, now)
        if not colleagues:
            return None  # nothing was written
        _first_seen(conn, seen, now)
    return Applied(tuple(colleagues))


def delay(store: Store, target: Target, not_before: datetime, next_due: datetime | None,
          record: EventRecord, seen: Seen, now: datetime) -> bool:
    """An out-of-office: the next step waits until the person is back."""
    with store.write() as conn:
        if not _first_seen(conn, seen, now):
            return False
        values: dict[str, object] = {"not_before": not_before}
        if next_due is not None:
            values["next_due"] = next_due
        conn.execute(update(enrollments).where(enrollments.c.id == target.enrollment_id,
                                               enrollments.c.state == ACTIVE)
                     .values(**values))
        stored_events.add(conn, record)
    return True


def note(store: Store, record: EventRecord, seen: Seen, now: datetime, *,
         company: CompanyStop | None = None) -> Applied | None:
    with store.write() as conn:
        if not _first_seen(conn, seen, now):
            return None
        stored_events.add(conn, record)
        colleagues = halt_company(conn, company, now) if company is not None else []
    return Applied(tuple(colleagues))


def hold_lease(store: Store, mailbox: str, owner: str, now: datetime, ttl_s: float) -> bool:
    """Take or renew the right to watch ``mailbox`` (one watcher per mailbox at a time):
    one conditional update, so two processes never both believe they hold it.

    The mailbox's row may not exist yet; when another transaction creates it first (a
    scheduler counting the mailbox's limits, as often on a fresh start), the update is
    tried again on the row it made instead of giving up for a whole lease interval."""
    from datetime import timedelta

    until = now + timedelta(seconds=ttl_s)
    for _ in range(2):
        with store.write() as conn:
            taken = conn.execute(
                update(mailboxes)
                .where(mailboxes.c.name == mailbox,
                       or_(mailboxes.c.lease_owner.is_(None), mailboxes.c.lease_owner == owner,
                           mailboxes.c.lease_until < now))
                .values(lease_owner=owner, lease_until=until)).rowcount
            if taken:
                return True
            if conn.scalar(select(mailboxes.c.name).where(mailboxes.c.name == mailbox)):
                return False
        try:
            with store.write() as conn:
                conn.execute(insert(mailboxes).values(name=mailbox, last_uid=0, paused=False,
                                                      lease_owner=owner, lease_until=until))
        except StoreConflict:
            continue  # someone created the row meanwhile: the update decides
        return True
    return False


def drop_lease(store: Store, mailbox: str, owner: str) -> None:
    with store.write() as conn:
        conn.execute(update(mailboxes).where(mailboxes.c.name == mailbox,
                                             mailboxes.c.lease_owner == owner)
                     .values(lease_owner=None, lease_until=None))


def renew_leases(store: Store, names: Iterable[str], owner: str, now: datetime,
                 ttl_s: float) -> set[str]:
    """Renew every lease ``owner`` still holds among ``names``, in one statement; returns
    the names renewed (a missing one was taken over after it ran out)."""
    wanted = sorted(names)
    if not wanted:
        return set()
    with store.write() as conn:
        return set(conn.scalars(
            update(mailboxes)
            .where(mailboxes.c.name.in_(wanted), mailboxes.c.lease_owner == owner)
            .values(lease_until=now + timedelta(seconds=ttl_s))
            .returning(mailboxes.c.name)))
