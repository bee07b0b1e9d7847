"""The send path's own statements, on one DB-API connection a sender keeps for its life.

Per message the sender commits the gate (one transaction, two conditional updates) and
hands its outcome to :meth:`HotPath.sent`, which commits outcomes in batches. The SQL is
the Core statements of ``store.claims`` and below, compiled once per dialect by SQLAlchemy
(types, paramstyle); only the execution skips SQLAlchemy's per-statement machinery, which
cost more than SQLite itself (see docs/benchmarks.md).

Batching outcomes is safe because it only ever widens the ``unknown`` window: a step whose
250 arrived but whose outcome was not committed yet is, after a crash, exactly a step past
the gate with no outcome, and the lease sweep marks it ``unknown`` — never resent. The gate
is never batched: each message commits its own before its DATA.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import ClauseElement, bindparam, case, exists, null, update
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler

from sequencer.core.machine import EnrollmentState, SendStatus
from sequencer.errors import StoreError
from sequencer.eventlog import EventRecord
from sequencer.store import events as stored_events
from sequencer.store import limits as mailbox_limits
from sequencer.store.claims import Job
from sequencer.store.db import Store
from sequencer.store.schema import enrollments, sends, suppressions

ACTIVE = EnrollmentState.ACTIVE.value


class Prepared:
    """A Core statement compiled once per dialect, then run on a DB-API cursor."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[Dialect, tuple[str, list[str] | None, dict[str, Any],
                                            dict[str, Callable[[Any], Any]]]] = {}

    def _compile(self, dialect: Dialect) -> tuple[str, list[str] | None, dict[str, Any],
                                                  dict[str, Callable[[Any], Any]]]:
        found = self._compiled.get(dialect)
        if found is None:
            compiled = cast(SQLCompiler, self.statement.compile(dialect=dialect))
            order = list(compiled.positiontup or ()) if dialect.positional else None
            processors: dict[str, Callable[[Any], Any]] = {}
            constants: dict[str, Any] = {}
            for name, bind in compiled.binds.items():
                processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
                if processor is not None:
                    processors[name] = processor
                if not bind.required:  # a literal of the statement (e.g. state = 'active')
                    constants[name] = processor(bind.value) if processor else bind.value
            found = self._compiled[dialect] = (compiled.string, order, constants, processors)
        return found

    def bind(self, dialect: Dialect, values: Mapping[str, Any]) -> tuple[str, Any]:
        """The SQL text and the driver's parameters for ``values``."""
        sql, order, constants, processors = self._compile(dialect)
        params = dict(constants)
        for name, value in values.items():
            processor = processors.get(name)
            params[name] = processor(value) if processor is not None and value is not None \
                else value
        if order is not None:
            return sql, tuple(params[name] for name in order)
        return sql, params

    def many(self, dialect: Dialect, rows: Sequence[Mapping[str, Any]]) -> tuple[str, list[Any]]:
        sql = self._compile(dialect)[0]
        return sql, [self.bind(dialect, row)[1] for row in rows]


class Gate(StrEnum):
    """What :meth:`HotPath.gate` decided."""

    GO = "go"  # this sender owns the step: send DATA now
    HALTED = "halted"  # the enrollment halted (or the claim was lost): send nothing
    DUPLICATE = "duplicate"  # another holder of the same claim already passed: send nothing
    BUSY = "busy"  # another send holds the spaced mailbox's turn: send nothing, give it back


_GATE_E = Prepared(
    update(enrollments)
    .where(enrollments.c.id == bindparam("eid"),
           enrollments.c.claim_token == bindparam("tok"),
           enrollments.c.state == ACTIVE,
           ~exists().where(suppressions.c.email_key == enrollments.c.email_key))
    .values(updated_at=bindparam("now"), lease_until=bindparam("lease_until"))
)
_GATE_S = Prepared(
    update(sends)
    .where(sends.c.id == bindparam("sid"),
           sends.c.status == SendStatus.CLAIMED.value,
           sends.c.data_at.is_(None))
    .values(data_at=bindparam("now"), subject=bindparam("subj"))
)
_TURN = Prepared(mailbox_limits.TAKE_TURN)
_SENT = Prepared(
    update(sends)
    .where(sends.c.id == bindparam("sid"), sends.c.status == SendStatus.CLAIMED.value,
           sends.c.data_at.is_not(None))
    .values(status=SendStatus.SENT.value, done_at=bindparam("now"),
            smtp_code=bindparam("code"), detail=null())
)


def _advance(completed: bool) -> Prepared:
    """After a 250: the claim is closed if this sender still holds it; the step counts as
    sent (``step_index`` moves on) whatever happened since the gate; only an enrollment
    still ``active`` takes its new state and next due time (never before an out-of-office
    return recorded meanwhile)."""
    e = enrollments.c
    active = e.state == ACTIVE
    if completed:
        next_due: Any = case((active, null()), else_=e.next_due)
    else:
        due = bindparam("due", type_=e.next_due.type)
        later = case((e.not_before > due, e.not_before), else_=due)
        next_due = case((active, later), else_=e.next_due)
    own = e.claim_token == bindparam("tok")
    this_step = e.step_index == bindparam("step")
    return Prepared(update(enrollments).where(e.id == bindparam("eid")).values(
        updated_at=bindparam("now"),
        claim_token=case((own, null()), else_=e.claim_token),
        lease_until=case((own, null()), else_=e.lease_until),
        state=case((active, bindparam("state")), else_=e.state),
        next_due=next_due,
        not_before=case((active, null()), else_=e.not_before),
        attempts=case((this_step, 0), else_=e.attempts),
        step_index=case((this_step, bindparam("next")), else_=e.step_index),
    ))


_ADVANCE = _advance(completed=False)
_COMPLETE = _advance(completed=True)
_EVENTS = Prepared(stored_events.INSERT_EVENTS)
_OUTBOX = Prepared(stored_events.INSERT_OUTBOX)


@dataclass(frozen=True)
class Sent:
    """A step the server took (250), waiting for its batch commit."""

    job: Job
    at: datetime
    code: int
    state: EnrollmentState
    next_index: int
    next_due: datetime | None
    records: tuple[EventRecord, ...] = field(default=())
    copy: bytes | None = field(default=None, repr=False)  # for the Sent folder, if wanted


class HotPath:
    """One DB-API connection for one sender (one thread): the gate, and the batch of
    outcomes waiting to be committed."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._dialect = store.writer.dialect
        self._errors: type[Exception] = store.writer.dialect.loaded_dbapi.Error
        self._raw: Any = None
        self.pending: list[Sent] = []

    def _cursor(self) -> Any:
        if self._raw is None:
            self._raw = self.store.writer.raw_connection()
        cur = self._raw.cursor()
        if self.store.is_sqlite:
            cur.execute("BEGIN IMMEDIATE")
        return cur

    def _fail(self, err: Exception) -> StoreError:
        raw, self._raw = self._raw, None
        if raw is not None:
            try:
                raw.rollback()
            except self._errors:
                raw.invalidate()  # the connection itself is gone: a new one next time
            finally:
                raw.close()
        return StoreError(f"database error: {err}")

    async def gate(self, job: Job, now: datetime, subject: str, hold: timedelta, *,
                   spaced: bool = False) -> Gate:
        """:meth:`commit_gate`, for the sender's event loop (it runs right here)."""
        return self.commit_gate(job, now, subject, hold, spaced=spaced)

    def commit_gate(self, job: Job, now: datetime, subject: str, hold: timedelta, *,
                    spaced: bool = False) -> Gate:
        """The point of no return, committed right before DATA: only while this claim still
        holds, the enrollment is active and the address not suppressed, and only once per
        send. The lease is renewed to ``hold`` from now (DATA, then the reply). A ``spaced``
        mailbox's turn is taken in the same transaction (``store.limits``)."""
        try:
            cur = self._cursor()
            cur.execute(*_GATE_E.bind(self._dialect, {
                "eid": job.enrollment_id, "tok": job.token, "now": now,
                "lease_until": now + hold}))
            if cur.rowcount != 1:
                self._raw.rollback()
                return Gate.HALTED
            if spaced:
                cur.execute(*_TURN.bind(self._dialect, {
                    "m": job.mailbox, "tok": job.token, "now": now, "until": now + hold}))
                if cur.rowcount != 1:
                    self._raw.commit()
                    return Gate.BUSY
            cur.execute(*_GATE_S.bind(self._dialect, {"sid": job.send_id, "now": now,
                                                      "subj": subject}))
            first = cur.rowcount == 1
            self._raw.commit()
        except self._errors as err:
            raise self._fail(err) from err
        return Gate.GO if first else Gate.DUPLICATE

    def sent(self, outcome: Sent) -> None:
        """Queue a 250 for the next :meth:`flush`."""
        self.pending.append(outcome)

    def flush(self, before_commit: Callable[[], None] | None = None) -> list[Sent]:
        """Commit every queued outcome in one transaction (with its events, and their
        webhook outbox rows); returns the outcomes committed. A step the lease sweep already
        called ``unknown`` is left so (and left out). On a database error the batch stays
        queued for the next flush."""
        if not self.pending:
            return []
        batch = list(self.pending)
        done: list[Sent] = []
        try:
            cur = self._cursor()
            advance: list[dict[str, Any]] = []
            complete: list[dict[str, Any]] = []
            for item in batch:
                job = item.job
                cur.execute(*_SENT.bind(self._dialect, {"sid": job.send_id, "now": item.at,
                                                        "code": item.code}))
                if cur.rowcount != 1:
                    continue  # finished as unknown by the lease sweep meanwhile
                params = {"eid": job.enrollment_id, "tok": job.token, "now": item.at,
                          "state": item.state.value, "step": job.step_index,
                          "next": item.next_index}
                if item.next_due is None:
                    complete.append(params)
                else:
                    params["due"] = item.next_due
                    advance.append(params)
                done.append(item)
            event_rows, outbox_rows = stored_events.rows(
                [r for item in done for r in item.records])
            for statement, rows in ((_ADVANCE, advance), (_COMPLETE, complete),
                                    (_EVENTS, event_rows), (_OUTBOX, outbox_rows)):
                if rows:
                    cur.executemany(*statement.many(self._dialect, rows))
            if before_commit is not None:
                before_commit()
            self._raw.commit()
        except self._errors as err:
            raise self._fail(err) from err
        del self.pending[:len(batch)]
        return done

    def close(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            raw.close()
