"""Read-side queries: what `status` shows, streamed.

``rows`` reads the enrollments in one ordered query with a server-side cursor (PostgreSQL)
or SQLite's own row-at-a-time stepping, a page of ``PAGE`` at a time, and reads the send
rows of each page by enrollment id (the ``(enrollment_id, step_index)`` index): memory
stays flat whatever the table's size. ``summary`` is two grouped counts in the database.
``mailbox_rows`` is each mailbox's health (``status --mailboxes``).
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, func, select

from sequencer.core.addresses import address_key
from sequencer.core.machine import EnrollmentState, SendStatus
from sequencer.mail.watching import HealthState
from sequencer.store.db import AnyRow, Store
from sequencer.store.health import STALE_AFTER_S
from sequencer.store.limits import MailboxLimits, sends_today
from sequencer.store.schema import enrollments, inbound, mailbox_health, mailboxes, sends

PAGE = 1000

_SENDS_OF = (
    select(sends.c.enrollment_id, sends.c.step_index, sends.c.step_name, sends.c.status)
    .where(sends.c.enrollment_id.in_(bindparam("ids", expanding=True)))
)
_NOTICE_COLUMNS = (inbound.c.enrollment_id, inbound.c.at, inbound.c.mailbox,
                   inbound.c.message_id, inbound.c.meaning, inbound.c.proof, inbound.c.action,
                   inbound.c.detail)
_NOTICES_OF = (
    select(*_NOTICE_COLUMNS)
    .where(inbound.c.review.is_(True),
           inbound.c.enrollment_id.in_(bindparam("ids", expanding=True)))
    .order_by(inbound.c.id)
)


@dataclass(frozen=True)
class Notice:
    """An inbound message that proved too little to act on fully: listed for review."""

    at: datetime
    mailbox: str
    message_id: str
    meaning: str | None
    proof: str | None
    action: str | None
    detail: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat().replace("+00:00", "Z"), "mailbox": self.mailbox,
                "message_id": self.message_id, "kind": self.meaning, "proof": self.proof,
                "action": self.action, "detail": self.detail}


@dataclass(frozen=True)
class StatusRow:
    email: str
    sequence: str
    mailbox: str
    state: str
    steps_sent: int
    last_step: str | None
    next_due: datetime | None
    flag: str | None
    unknown_steps: int
    unverified: tuple[Notice, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "sequence": self.sequence,
            "mailbox": self.mailbox,
            "state": self.state,
            "steps_sent": self.steps_sent,
            "last_step": self.last_step,
            "next_due": (self.next_due.isoformat().replace("+00:00", "Z")
                         if self.next_due else None),
            "flag": self.flag,
            "unknown_steps": self.unknown_steps,
            "unverified": [n.as_dict() for n in self.unverified],
        }


def _query(email: str | None, sequence: str | None, state: str | None,
           limit: int | None) -> Select[Any]:
    query = (
        select(enrollments.c.id, enrollments.c.email, enrollments.c.sequence,
               enrollments.c.mailbox, enrollments.c.state, enrollments.c.next_due,
               enrollments.c.flag)
        .order_by(enrollments.c.sequence, enrollments.c.id)
    )
    if email:
        query = query.where(enrollments.c.email_key == address_key(email))
    if sequence:
        query = query.where(enrollments.c.sequence == sequence)
    if state:
        query = query.where(enrollments.c.state == state)
    if limit is not None:
        query = query.limit(limit)
    return query


def rows(store: Store, *, email: str | None = None, sequence: str | None = None,
         state: str | None = None, limit: int | None = None
         ) -> Generator[StatusRow, None, None]:
    """Every enrollment matching the filters, ordered by sequence then enrollment, as a
    stream (consume it or close it: it holds a read transaction while it runs)."""
    sent_status, unknown_status = SendStatus.SENT.value, SendStatus.UNKNOWN.value
    active = EnrollmentState.ACTIVE.value
    with store.read() as conn:
        result = conn.execution_options(stream_results=True, yield_per=PAGE).execute(
            _query(email, sequence, state, limit))
        for page in result.partitions(PAGE):
            sent: dict[int, list[tuple[int, str]]] = {}
            unknown: dict[int, int] = {}
            ids = [r[0] for r in page]
            for eid, index, name, status in conn.execute(_SENDS_OF, {"ids": ids}):
                if status == sent_status:
                    sent.setdefault(eid, []).append((index, name))
                elif status == unknown_status:
                    unknown[eid] = unknown.get(eid, 0) + 1
            notices: dict[int, list[Notice]] = {}
            for eid, *fields in conn.execute(_NOTICES_OF, {"ids": ids}):
                notices.setdefault(eid, []).append(Notice(*fields))
            for eid, address, seq, mailbox, now_state, due, flag in page:
                done = sent.get(eid, ())
                yield StatusRow(address, seq, mailbox, now_state, len(done),
                                max(done)[1] if done else None,
                                due if now_state == active else None, flag,
                                unknown.get(eid, 0), tuple(notices.get(eid, ())))


def status(store: Store, *, email: str | None = None,
           sequence: str | None = None) -> list[StatusRow]:
    """``rows`` as a list (for small results)."""
    return list(rows(store, email=email, sequence=sequence))


@dataclass
class StepCounts:
    index: int
    name: str | None = None
    waiting: int = 0  # active enrollments whose next step this is
    sends: dict[str, int] = field(default_factory=dict)  # send status -> count

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.index + 1, "name": self.name, "waiting": self.waiting,
                **{s.value: self.sends.get(s.value, 0) for s in SendStatus}}


@dataclass
class SequenceCounts:
    sequence: str
    states: dict[str, int] = field(default_factory=dict)
    steps: dict[int, StepCounts] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.states.values())

    def step(self, index: int) -> StepCounts:
        return self.steps.setdefault(index, StepCounts(index))

    def as_dict(self) -> dict[str, Any]:
        return {"sequence": self.sequence, "total": self.total,
                "states": {s.value: self.states.get(s.value, 0) for s in EnrollmentState},
                "steps": [self.steps[i].as_dict() for i in sorted(self.steps)]}


def summary(store: Store, *, sequence: str | None = None,
            state: str | None = None) -> list[SequenceCounts]:
    """Counts per sequence and state, and per step (active enrollments waiting for it, and
    its sends by status), in two grouped queries."""
    by_state = (select(enrollments.c.sequence, enrollments.c.state, enrollments.c.step_index,
                       func.count().label("n"))
                .group_by(enrollments.c.sequence, enrollments.c.state,
                          enrollments.c.step_index))
    by_step = (select(enrollments.c.sequence, sends.c.step_index,
                      func.max(sends.c.step_name).label("name"), sends.c.status,
                      func.count().label("n"))
               .join(enrollments, enrollments.c.id == sends.c.enrollment_id)
               .group_by(enrollments.c.sequence, sends.c.step_index, sends.c.status))
    for column, value in ((enrollments.c.sequence, sequence), (enrollments.c.state, state)):
        if value:
            by_state, by_step = by_state.where(column == value), by_step.where(column == value)
    found: dict[str, SequenceCounts] = {}
    with store.read() as conn:
        for r in conn.execute(by_state):
            counts = found.setdefault(r.sequence, SequenceCounts(r.sequence))
            counts.states[r.state] = counts.states.get(r.state, 0) + r.n
            if r.state == EnrollmentState.ACTIVE.value:
                counts.step(r.step_index).waiting += r.n
        for r in conn.execute(by_step):
            step = found.setdefault(r.sequence, SequenceCounts(r.sequence)).step(r.step_index)
            step.name = step.name or r.name
            step.sends[r.status] = r.n
    return [found[name] for name in sorted(found)]


# --- mailboxes (`status --mailboxes`) ----------------------------------------------------

#: Shown states beyond the watcher's own (``mail.watching.HealthState``).
PAUSED, AUTH_NEEDED, NOT_WATCHED, NO_REPORT, STALE, SILENT = (
    "paused", "auth_needed", "not_watched", "no_report", "stale", "silent")
_HEALTHY = {HealthState.WATCHING.value, NOT_WATCHED}


@dataclass(frozen=True)
class Watched:
    """What `status --mailboxes` needs to know of one configured mailbox."""

    limits: MailboxLimits
    watched: bool  # it has an `imap:` or `inbox:`
    #: A watching IMAP watcher whose server has not answered for this long is silent
    #: (None: no server to answer, a Maildir).
    silent_after_s: float | None = None


@dataclass(frozen=True)
class MailboxRow:
    name: str
    state: str
    healthy: bool
    detail: str | None  # why it is not healthy, in words
    last_answer_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    cursor_lag: int | None
    sends_today: int
    daily_limit: int | None
    reported_at: datetime | None
    reported_state: str | None  # what the watcher itself last said
    since: datetime | None = None  # in that state since (when the watcher said so)

    def as_dict(self) -> dict[str, Any]:
        return {"mailbox": self.name, "state": self.state, "healthy": self.healthy,
                "detail": self.detail, "last_answer_at": _iso(self.last_answer_at),
                "last_error": self.last_error, "last_error_at": _iso(self.last_error_at),
                "cursor_lag": self.cursor_lag, "sends_today": self.sends_today,
                "daily_limit": self.daily_limit, "reported_at": _iso(self.reported_at),
                "reported_state": self.reported_state, "since": _iso(self.since)}


def _iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at else None


def ago(seconds: float) -> str:
    """``45s``, ``2m``, ``3h``, ``2d``: how long, roughly (whole units, rounded down)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(0, int(seconds))}s"


def judge(box: Watched, paused: AnyRow | None, report: AnyRow | None, now: datetime
          ) -> tuple[str, str | None]:
    """(state, detail) of one mailbox: a pause first, then what its watcher last reported,
    unless that report is missing, stale, or says watching while the server is silent."""
    if paused is not None and paused.paused:
        state = AUTH_NEEDED if paused.pause_kind == "auth" else PAUSED
        return state, paused.pause_reason or "paused by hand"
    if not box.watched:
        return NOT_WATCHED, None
    if report is None:
        return NO_REPORT, "no report yet: watcher not running?"
    age = (now - report.updated_at).total_seconds()
    if age > STALE_AFTER_S:
        return STALE, f"no report for {ago(age)}: watcher not running?"
    if report.state == HealthState.WATCHING.value and box.silent_after_s is not None:
        since = report.last_answer_at or report.since
        quiet = (now - since).total_seconds()
        if quiet > box.silent_after_s:
            return SILENT, f"no answer from the server for {ago(quiet)}"
    if report.state in (HealthState.FAILING.value, HealthState.SILENT.value,
                        HealthState.AUTH_NEEDED.value):
        return report.state, report.last_error
    if report.state == HealthState.STOPPED.value:
        return report.state, "the watcher was stopped"
    return report.state, None


def mailbox_rows(store: Store, boxes: Mapping[str, Watched], now: datetime
                 ) -> list[MailboxRow]:
    """One row per mailbox in ``boxes`` (in that order): its state, its watcher's last
    report and today's sends against ``daily_limit``, in three small queries and one count
    per mailbox (the ``(mailbox, created_at)`` index)."""
    names = list(boxes)
    found: list[MailboxRow] = []
    with store.read() as conn:
        paused = {r.name: r for r in conn.execute(
            select(mailboxes.c.name, mailboxes.c.paused, mailboxes.c.pause_reason,
                   mailboxes.c.pause_kind).where(mailboxes.c.name.in_(names)))}
        reports = {r.name: r for r in conn.execute(
            select(mailbox_health).where(mailbox_health.c.name.in_(names)))}
        for name, box in boxes.items():
            report = reports.get(name)
            state, detail = judge(box, paused.get(name), report, now)
            found.append(MailboxRow(
                name, state, state in _HEALTHY, detail,
                report.last_answer_at if report else None,
                report.last_error if report else None,
                report.last_error_at if report else None,
                report.cursor_lag if report else None,
                sends_today(conn, name, box.limits, now), box.limits.daily,
                report.updated_at if report else None, report.state if report else None,
                report.since if report and report.state == state else None))
    return found
