"""Recording what became of a claimed step (sent, retried, failed, bounced, unknown), and
pausing a mailbox whose credentials or TLS failed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Update, bindparam, delete, exists, insert, select, update

from sequencer.core.machine import EnrollmentState, SendStatus
from sequencer.eventlog import EventRecord
from sequencer.store import events as stored_events
from sequencer.store.claims import Job
from sequencer.store.db import Store
from sequencer.store.halting import add_suppression, drop_unsent, halt_address
from sequencer.store.schema import enrollments, mailboxes, sends

ACTIVE = EnrollmentState.ACTIVE.value

_FINISH_ENROLLMENT: dict[tuple[bool, tuple[str, ...]], Update] = {}
_FINISH_SEND: dict[tuple[bool, bool], Update] = {}


def _finish_enrollment_stmt(passed_gate: bool, names: tuple[str, ...]) -> Update:
    """``_finish``'s conditional update, built once per (gate, columns set) and reused."""
    stmt = _FINISH_ENROLLMENT.get((passed_gate, names))
    if stmt is None:
        conditions = [enrollments.c.id == bindparam("eid"), enrollments.c.state == ACTIVE]
        values: dict[str, object] = {"updated_at": bindparam("now")}
        if not passed_gate:
            conditions += [enrollments.c.claim_token == bindparam("tok"),
                           ~exists().where(sends.c.id == bindparam("sid"),
                                           sends.c.data_at.is_not(None))]
            values.update(claim_token=None, lease_until=None)
        values.update({name: bindparam(f"v_{name}") for name in names})
        stmt = _FINISH_ENROLLMENT[(passed_gate, names)] = (
            update(enrollments).where(*conditions).values(**values))
    return stmt


def _finish_send_stmt(with_status: bool, passed_gate: bool) -> Update:
    stmt = _FINISH_SEND.get((with_status, passed_gate))
    if stmt is None:
        values: dict[str, object] = {"smtp_code": bindparam("v_code"),
                                     "detail": bindparam("v_detail")}
        if with_status:
            values.update(status=bindparam("v_status"), done_at=bindparam("now"))
        conditions = [sends.c.id == bindparam("sid")]
        if passed_gate:
            conditions += [sends.c.status == SendStatus.CLAIMED.value,
                           sends.c.data_at.is_not(None)]
        stmt = _FINISH_SEND[(with_status, passed_gate)] = (
            update(sends).where(*conditions).values(**values))
    return stmt


_CLEAR_CLAIM = (
    update(enrollments)
    .where(enrollments.c.id == bindparam("eid"), enrollments.c.claim_token == bindparam("tok"))
    .values(claim_token=None, lease_until=None, updated_at=bindparam("now"))
)


def _finish(conn: Connection, job: Job, now: datetime, *, send_status: SendStatus | None,
            code: int | None, detail: str | None, passed_gate: bool = True,
            **enrollment: object) -> bool:
    """Record the step's outcome and close the claim.

    After the gate the step may have gone out, so its send row is recorded whatever
    happened to the claim since (a stop, a pause); the enrollment's own columns change only
    while it is still ``active`` — a reply committed after the gate is never undone.
    Before the gate, a sender may only close its claim while it still holds it, the
    enrollment is active, and no other holder of the same claim passed the gate.
    """
    send_params: dict[str, object] = {"sid": job.send_id, "now": now, "v_code": code,
                                      "v_detail": detail}
    if send_status is not None:
        send_params["v_status"] = send_status.value
    send_stmt = _finish_send_stmt(send_status is not None, passed_gate)
    if passed_gate:
        if conn.execute(send_stmt, send_params).rowcount != 1:
            return False  # already finished (as unknown) by the lease sweep
        conn.execute(_CLEAR_CLAIM, {"eid": job.enrollment_id, "tok": job.token, "now": now})
    names = tuple(sorted(enrollment))
    params: dict[str, object] = {"eid": job.enrollment_id, "tok": job.token, "now": now,
                                 "sid": job.send_id}
    params.update({f"v_{name}": enrollment[name] for name in names})
    won = conn.execute(_finish_enrollment_stmt(passed_gate, names), params).rowcount
    if passed_gate:
        return True
    if won != 1:
        return False
    conn.execute(send_stmt, send_params)
    return True


def record_retry(store: Store, job: Job, now: datetime, *, code: int, detail: str,
                 next_due: datetime, records: list[EventRecord],
                 passed_gate: bool = True) -> bool:
    """A transient failure before the message was accepted: try again at ``next_due``."""
    with store.write() as conn:
        ok = _finish(conn, job, now, send_status=None, code=code, detail=detail,
                     passed_gate=passed_gate, next_due=next_due, attempts=job.attempts + 1)
        if ok:
            conn.execute(update(sends).where(sends.c.id == job.send_id).values(data_at=None))
            state = conn.scalar(select(enrollments.c.state)
                                .where(enrollments.c.id == job.enrollment_id))
            if state != ACTIVE:
                drop_unsent(conn, job.enrollment_id)  # halted meanwhile: no retry to keep
            stored_events.add(conn, *records)
    return ok


def record_final(store: Store, job: Job, now: datetime, *, send_status: SendStatus,
                 state: EnrollmentState, code: int | None, detail: str,
                 records: list[EventRecord], suppress: str | None = None,
                 flag: str | None = None, passed_gate: bool = True) -> bool:
    """Failed, bounced or unknown: the step is over and the enrollment leaves ``active``.
    A suppression (hard bounce) halts the address's other active enrollments too."""
    with store.write() as conn:
        ok = _finish(conn, job, now, send_status=send_status, code=code, detail=detail,
                     passed_gate=passed_gate, state=state.value, next_due=None, flag=flag)
        if ok:
            if suppress:
                add_suppression(conn, job.email, suppress, now)
                halt_address(conn, job.email, state, now)
            stored_events.add(conn, *records)
    return ok


_PAUSE_BEFORE_GATE = (
    update(enrollments)
    .where(enrollments.c.id == bindparam("eid"), enrollments.c.claim_token == bindparam("tok"),
           enrollments.c.state == ACTIVE,
           ~exists().where(sends.c.id == bindparam("sid"), sends.c.data_at.is_not(None)))
    .values(state=EnrollmentState.PAUSED.value, flag=bindparam("flag"), next_due=None,
            claim_token=None, lease_until=None, updated_at=bindparam("now"))
)
_PAUSE_AFTER_GATE = (
    update(enrollments)
    .where(enrollments.c.id == bindparam("eid"), enrollments.c.state == ACTIVE)
    .values(state=EnrollmentState.PAUSED.value, flag=bindparam("flag"), next_due=None,
            claim_token=None, lease_until=None, updated_at=bindparam("now"))
)


def record_paused(store: Store, job: Job, now: datetime, *, flag: str,
                  records: list[EventRecord], passed_gate: bool = False) -> bool:
    """Our settings, not the prospect, kept the step from going out (a template or setting
    error, an unknown mailbox, the server refusing *us*): the enrollment is ``paused`` with
    ``flag``, never failed, and ``sequencer resume`` sends the step once it is fixed.

    Nothing was delivered, so the step's send row goes (the next claim makes a fresh one).
    Past the gate that is known only from a definite refusal of DATA; the row must still be
    this sender's (not finished as ``unknown`` by the sweep).
    """
    params = {"eid": job.enrollment_id, "tok": job.token, "sid": job.send_id, "now": now,
              "flag": flag}
    with store.write() as conn:
        if passed_gate:
            gone = conn.execute(delete(sends).where(
                sends.c.id == job.send_id, sends.c.status == SendStatus.CLAIMED.value,
                sends.c.data_at.is_not(None))).rowcount
            if gone != 1:
                return False
            paused = conn.execute(_PAUSE_AFTER_GATE, params).rowcount == 1
            conn.execute(_CLEAR_CLAIM, params)
        else:
            paused = conn.execute(_PAUSE_BEFORE_GATE, params).rowcount == 1
            if paused:
                drop_unsent(conn, job.enrollment_id)
        if paused:
            stored_events.add(conn, *records)
    return paused


def pause_mailbox(store: Store, mailbox: str, reason: str, record: EventRecord, *,
                  kind: str | None = None) -> bool:
    """Pause a mailbox (e.g. its credentials were refused: ``kind="auth"``). True if it was
    not paused yet; then ``record`` is stored too."""
    with store.write() as conn:
        row = conn.execute(select(mailboxes.c.paused).where(mailboxes.c.name == mailbox)).first()
        if row is not None and row.paused:
            return False
        if row is None:
            conn.execute(insert(mailboxes).values(name=mailbox, paused=True,
                                                  pause_reason=reason, pause_kind=kind,
                                                  last_uid=0))
        else:
            conn.execute(update(mailboxes).where(mailboxes.c.name == mailbox)
                         .values(paused=True, pause_reason=reason, pause_kind=kind))
        stored_events.add(conn, record)
        return True


def unpause_mailboxes(store: Store) -> list[str]:
    """Give every paused mailbox another chance (a restart after fixing its settings)."""
    with store.write() as conn:
        names = list(conn.scalars(select(mailboxes.c.name).where(mailboxes.c.paused)))
        if names:
            conn.execute(update(mailboxes).where(mailboxes.c.name.in_(names))
                         .values(paused=False, pause_reason=None, pause_kind=None))
    return names


def unpause_mailbox(store: Store, mailbox: str) -> bool:
    """Give one paused mailbox another chance (``sequencer auth`` stored a new grant)."""
    with store.write() as conn:
        done = conn.execute(update(mailboxes).where(mailboxes.c.name == mailbox,
                                                    mailboxes.c.paused)
                            .values(paused=False, pause_reason=None, pause_kind=None))
        return bool(done.rowcount)
