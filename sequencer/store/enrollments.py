"""Enrolling prospects: one transaction per import, inserted in batches, idempotent (a
prospect is enrolled in a sequence once)."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from sequencer.core.machine import EnrollmentState, Event, SendStatus
from sequencer.core.spec import Sequence
from sequencer.errors import StoreError
from sequencer.eventlog import EventRecord
from sequencer.prospects import Prospect, Rejected
from sequencer.store import events as stored_events
from sequencer.store.assignment import Assigner, assigner
from sequencer.store.db import Store
from sequencer.store.events import BulkInsert
from sequencer.store.schema import enrollments, events, prospects, sends, suppressions

BATCH = 2000


# Built once: building (and cache-keying) a statement costs more than running it.
# Every comparison is by ``email_key`` (``address_key``); ``email`` keeps the CSV's spelling.
_SUPPRESSED = (
    select(suppressions.c.email_key, suppressions.c.reason)
    .where(suppressions.c.email_key.in_(bindparam("keys", expanding=True)))
)
_ENROLLED = (
    select(enrollments.c.email_key, enrollments.c.email)
    .where(enrollments.c.sequence == bindparam("sequence"),
           enrollments.c.email_key.in_(bindparam("keys", expanding=True)))
)
# Active or paused in another sequence: the prospect's current sequence(s).
OPEN = (EnrollmentState.ACTIVE.value, EnrollmentState.PAUSED.value)
_ACTIVE_ELSEWHERE = (
    select(enrollments.c.id, enrollments.c.email_key, enrollments.c.email,
           enrollments.c.sequence, enrollments.c.mailbox)
    .where(enrollments.c.sequence != bindparam("sequence"),
           enrollments.c.state.in_(OPEN),
           enrollments.c.email_key.in_(bindparam("keys", expanding=True)))
    .order_by(enrollments.c.id)
)
# PostgreSQL: two imports of one prospect into two sequences must not both find them free.
_LOCK_PROSPECTS = (
    select(prospects.c.id)
    .where(prospects.c.email_key.in_(bindparam("keys", expanding=True)))
    .order_by(prospects.c.id).with_for_update()
)
# A new address becomes a prospect, a known one stays as it is (with its first spelling);
# the enrollment insert looks the id up itself, so nothing is selected back.
_NEW_PROSPECT = {
    name: BulkInsert(
        dialect.insert(prospects)
        .values(email=bindparam("p_email", type_=prospects.c.email.type),
                email_key=bindparam("p_key", type_=prospects.c.email_key.type),
                created_at=bindparam("p_created_at", type_=prospects.c.created_at.type))
        .on_conflict_do_nothing(index_elements=[prospects.c.email_key]),
        per_row=("p_email", "p_key"))
    for name, dialect in (("sqlite", sqlite), ("postgresql", postgresql))
}
_ENROLLMENT_COLUMNS = ("email", "email_key", "next_due", "timezone", "follow_up_by",  # per row
                       "vars", "sequence", "mailbox", "state", "step_index", "attempts",
                       "enrolled_at", "updated_at")
_NEW_ENROLLMENT = BulkInsert(
    insert(enrollments).values({
        **{name: bindparam(f"n_{name}", type_=enrollments.c[name].type)
           for name in _ENROLLMENT_COLUMNS},
        "prospect_id": select(prospects.c.id)
        .where(prospects.c.email_key == bindparam("n_email_key",
                                                  type_=prospects.c.email_key.type))
        .scalar_subquery(),
    }),
    per_row=("n_email", "n_email_key", "n_next_due", "n_timezone", "n_follow_up_by",
             "n_vars", "n_mailbox"))
# The `enrolled` event of each enrollment: the columns stored_events.add fills for it.
_ENROLLED_EVENT = BulkInsert(
    insert(events).values({name: bindparam(f"e_{name}", type_=events.c[name].type)
                           for name in ("email", "at", "event", "mailbox", "sequence")}),
    per_row=("e_email", "e_mailbox"))


@dataclass(frozen=True)
class Enrolled:
    line: int
    email: str
    next_due: datetime
    warning: str | None = None  # enrolled, but worth a look (a look-alike domain)
    moved_from: tuple[str, ...] = ()  # the sequences `--move` stopped for this one


@dataclass(frozen=True)
class Current:
    """An enrollment the prospect is active (or paused) in, in another sequence."""

    id: int
    email: str
    sequence: str
    mailbox: str


@dataclass(frozen=True)
class Rules:
    """How an import treats a prospect who is active in another sequence: rejected once
    they are in ``max_active`` sequences, unless ``move``, which stops every other one
    (state ``stopped``, event detail ``moved to …``) and enrolls them here."""

    max_active: int = 1
    move: bool = False


def enroll(
    store: Store,
    sequence: Sequence,
    rows: Iterable[Prospect | Rejected],
    now: datetime,
    first_due: Callable[[Prospect], datetime],
    default_timezone: str,
    *,
    mailboxes: tuple[str, ...] | None = None,
    rules: Rules = Rules(),
) -> Generator[Enrolled | Rejected, None, None]:
    """Enroll every accepted row, reject those already enrolled or suppressed, and those
    active in other sequences as ``rules`` say (or move them here).

    Each new prospect gets one of ``mailboxes`` (the sequence's, pools expanded; by default
    its one ``mailbox``) by the sequence's ``assign`` policy (``store.assignment``); a paused
    or failing one gets none, and when none can take prospects nothing is stored.

    Yields one result per input row, in order, a batch at a time. The whole import is one
    transaction: nothing is visible (so nothing is sent) before the last row is in, and an
    error from ``rows`` (a whole-file problem), the database or the caller leaves nothing
    stored. Consume it to the end, or close it, to end the transaction.
    """
    with store.write() as conn:
        assign = assigner(conn, sequence.name, mailboxes or (sequence.mailbox,),
                          sequence.assign)
        batch: list[Prospect | Rejected] = []
        planned = conn.dialect.name == "sqlite"
        for row in rows:
            batch.append(row)
            if len(batch) >= BATCH:
                yield from _enroll_batch(conn, sequence, batch, now, first_due,
                                         default_timezone, assign, rules)
                batch = []
                if not planned:
                    _analyze_if_unknown(conn)
                    planned = True
        if batch:
            yield from _enroll_batch(conn, sequence, batch, now, first_due, default_timezone,
                                     assign, rules)


def _enroll_batch(
    conn: Connection,
    sequence: Sequence,
    batch: list[Prospect | Rejected],
    now: datetime,
    first_due: Callable[[Prospect], datetime],
    default_timezone: str,
    assign: Assigner,
    rules: Rules,
) -> list[Enrolled | Rejected]:
    spellings = {p.key: p.email for p in batch if isinstance(p, Prospect)}
    keys = list(spellings)
    name = sequence.name
    results: list[Enrolled | Rejected] = []
    suppressed: dict[str, str] = {}
    enrolled: dict[str, str] = {}
    current: dict[str, list[Current]] = {}
    if keys:
        suppressed = dict(conn.execute(_SUPPRESSED, {"keys": keys}).all())
        enrolled = dict(conn.execute(_ENROLLED, {"keys": keys, "sequence": name}).all())
        _new_prospect(conn).execute(conn, {"p_created_at": now},
                                    [(email, key) for key, email in spellings.items()])
        if conn.dialect.name != "sqlite":  # SQLite: the import holds the write lock already
            conn.execute(_LOCK_PROSPECTS, {"keys": keys}).all()
        for row in conn.execute(_ACTIVE_ELSEWHERE, {"keys": keys, "sequence": name}):
            current.setdefault(row.email_key, []).append(
                Current(row.id, row.email, row.sequence, row.mailbox))
    values: list[tuple[Any, ...]] = []
    moving: list[Current] = []
    for item in batch:
        if isinstance(item, Rejected):
            results.append(item)
            continue
        email, key = item.email, item.key
        if key in suppressed:
            results.append(Rejected(item.line, email, f"suppressed ({suppressed[key]})"))
            continue
        if key in enrolled:
            as_ = "" if enrolled[key] == email else f" as {enrolled[key]}"
            results.append(Rejected(item.line, email, f"already enrolled in {name}{as_}"))
            continue
        others = current.get(key, [])
        if others and not rules.move and len(others) >= rules.max_active:
            results.append(Rejected(item.line, email, _busy(others, rules.max_active)))
            continue
        moved = others if rules.move else []
        moving += moved
        due = first_due(item)
        values.append((email, key, due, item.timezone or default_timezone,
                       item.follow_up_by, dict(item.fields), assign()))
        enrolled[key] = email
        results.append(Enrolled(item.line, email, due, item.warning,
                                tuple(other.sequence for other in moved)))
    _stop_moved(conn, moving, name, now)
    _NEW_ENROLLMENT.execute(conn, {
        "n_sequence": name, "n_state": EnrollmentState.ACTIVE.value,
        "n_step_index": 0, "n_attempts": 0, "n_enrolled_at": now, "n_updated_at": now,
    }, values)
    _ENROLLED_EVENT.execute(conn, {
        "e_at": now, "e_event": Event.ENROLLED.value, "e_sequence": name,
    }, [(v[0], v[6]) for v in values])
    return results


# Tables PostgreSQL has never analyzed (``reltuples`` -1): a fresh database, or one whose
# first import is still in progress (autovacuum only sees committed rows).
_UNANALYZED = text(
    "SELECT relname FROM pg_class WHERE relname IN ('prospects', 'enrollments', "
    "'suppressions') AND relkind = 'r' AND relnamespace = to_regnamespace(current_schema()) "
    "AND reltuples < 0 ORDER BY relname")


def _analyze_if_unknown(conn: Connection) -> None:
    """On a PostgreSQL with no statistics for these tables, ``ANALYZE`` them once, inside
    the import's transaction (it counts the rows the import inserted so far).

    Without statistics the planner guesses that ``email_key IN (2,000 keys)`` matches most
    of the table and reads a whole index for every batch, so a 100k import took 227 s;
    once it knows ``email_key`` is nearly unique each batch is 2,000 index lookups, and
    the import stays linear.
    """
    for name in conn.scalars(_UNANALYZED).all():
        conn.exec_driver_sql(f'ANALYZE "{name}"')


def _busy(others: list[Current], max_active: int) -> str:
    if len(others) == 1:
        return f"active in sequence {others[0].sequence}; use --move"
    names = ", ".join(other.sequence for other in others)
    return f"active in sequences {names} (max_active_sequences: {max_active}); use --move"


def _stop_moved(conn: Connection, moving: list[Current], to: str, now: datetime) -> None:
    """``--move``: the prospect's current enrollments end as ``stopped`` (reason: moved).

    Conditional on still being active or paused; a claimed step that never reached DATA
    is forgotten (the sender's gate would refuse it anyway), one past DATA is recorded by
    its sender as usual.
    """
    if not moving:
        return
    ids = [other.id for other in moving]
    stopped = set(conn.scalars(
        update(enrollments)
        .where(enrollments.c.id.in_(ids), enrollments.c.state.in_(OPEN))
        .values(state=EnrollmentState.STOPPED.value, next_due=None, claim_token=None,
                lease_until=None, updated_at=now)
        .returning(enrollments.c.id)))
    conn.execute(delete(sends).where(sends.c.enrollment_id.in_(sorted(stopped)),
                                     sends.c.status == SendStatus.CLAIMED.value,
                                     sends.c.data_at.is_(None)))
    stored_events.add(conn, *(
        EventRecord(Event.STOPPED, now, email=other.email, mailbox=other.mailbox,
                    sequence=other.sequence, detail=f"moved to {to}",
                    enrollment_id=other.id)
        for other in moving if other.id in stopped))


def _new_prospect(conn: Connection) -> BulkInsert:
    statement = _NEW_PROSPECT.get(conn.dialect.name)
    if statement is None:
        raise StoreError(f"unsupported database {conn.dialect.name!r}: use SQLite or PostgreSQL")
    return statement
