"""When steps go out: ``sequencer plan``, ``plan --capacity``, and the claim-time hold.

Every time here comes from ``core.schedule`` (which asks ``core.timing``): the same
computation the sender and the scheduler use, over the same stored state.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from sequencer.core import schedule
from sequencer.core.addresses import address_key
from sequencer.core.machine import EnrollmentState, SendStatus
from sequencer.core.schedule import Planned, Recipient
from sequencer.core.spec import Sequence
from sequencer.core.timing import WEEK, Due, Moved
from sequencer.errors import EnrollError
from sequencer.prospects import Prospect, read_prospects
from sequencer.store import pacing
from sequencer.store.pacing import Candidate, Held
from sequencer.store.schema import enrollments, sends
from sequencer.usecases.importing import key_of
from sequencer.workspace import Workspace

ACTIVE = EnrollmentState.ACTIVE.value


# --- the claim-time hold ---------------------------------------------------------------


def lookback(app: Workspace) -> pacing.Lookback:
    """How far back the pacing of each sequence looks (None: it has no pacing)."""
    def back(name: str) -> timedelta | None:
        seq = app.sequences.get(name)
        if seq is None or not seq.pacing.active:
            return None
        return max(WEEK, seq.pacing.min_gap or timedelta(0))
    return back


def claim_hold(app: Workspace, now: datetime) -> pacing.Hold:
    """The scheduler's check before it claims a due step: the step's window, holidays and
    pacing must allow ``now``; otherwise it waits until they do."""
    def hold(candidate: Candidate, history: list[datetime]) -> Held | None:
        seq = app.sequences.get(candidate.sequence)
        if seq is None or candidate.step_index >= len(seq.steps):
            return None
        who = Recipient(candidate.email, candidate.timezone, candidate.vars)
        if not schedule.needs_hold(seq, who):
            return None
        due = schedule.hold(seq, who, candidate.step_index, now, history)
        if due.at <= now:
            return None
        return Held(due.at, why(seq, due, history, now))
    return hold


def why(seq: Sequence, due: Due, history: Iterable[datetime], now: datetime) -> str:
    """``held by pacing (min_gap 2d, max_per_week 1; last email …), window; due …``"""
    parts: list[str] = []
    for reason in due.moved_by:
        if reason is Moved.PACING:
            limits = [f"min_gap {span_text(seq.pacing.min_gap)}" if seq.pacing.min_gap else "",
                      f"max_per_week {seq.pacing.max_per_week}"
                      if seq.pacing.max_per_week else ""]
            before = [h for h in history if h <= now]
            last = f"; last email {_utc(max(before))}" if before else ""
            parts.append(f"pacing ({', '.join(p for p in limits if p)}{last})")
        else:
            parts.append(reason.value)
    return f"held by {', '.join(parts)}; due at {_utc(due.at)}"


def span_text(span: timedelta | None) -> str:
    seconds = int(span.total_seconds()) if span else 0
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# --- sequencer plan --------------------------------------------------------------------


@dataclass(frozen=True)
class ProspectPlan:
    email: str
    timezone: str
    steps: list[Planned]
    state: str | None = None  # the enrollment's state; None for a CSV row

    def as_dict(self) -> dict[str, object]:
        tz = ZoneInfo(self.timezone)
        return {
            "email": self.email,
            "steps": [{
                "step": p.step,
                "due_utc": p.at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "due_local": p.at.astimezone(tz).isoformat(),
                "moved_by": [reason.value for reason in p.moved_by],
                **({"sent": True} if p.sent else {}),
            } for p in self.steps],
        }


def plan_enrolled(app: Workspace, seq: Sequence, email: str) -> ProspectPlan:
    """The plan of an enrolled prospect from their stored state: steps already sent, an
    out-of-office return, the date columns and the country of their row, and every other
    email they were sent (pacing)."""
    now = app.clock()
    with app.store.read() as conn:
        row = conn.execute(select(enrollments).where(
            enrollments.c.email_key == key_of(email), enrollments.c.sequence == seq.name)
        ).first()
        if row is None:
            raise EnrollError(f"{email} is not enrolled in {seq.name}")
        address = row.email  # the enrollment's own spelling
        own = conn.execute(select(sends.c.step_index, sends.c.done_at, sends.c.data_at,
                                  sends.c.created_at).where(
            sends.c.enrollment_id == row.id,
            sends.c.status.in_([SendStatus.SENT.value, SendStatus.UNKNOWN.value]))).all()
        history = [email.at for email in pacing.history(conn, address, now,
                                                        now - _lookback(seq))
                   if email.enrollment_id != row.id]
    sent = [(s.step_index, s.done_at or s.data_at or s.created_at) for s in own]
    who = Recipient(address, row.timezone, row.vars or {}, row.not_before)
    if row.state != ACTIVE:
        steps = schedule.plan(seq, who, now, step_index=len(seq.steps), sent=sent)
        return ProspectPlan(address, row.timezone, steps, row.state)
    previous = max((at for _, at in sent), default=row.enrolled_at)
    steps = schedule.plan(seq, who, now, step_index=row.step_index, previous=previous,
                          next_due=row.next_due, sent=sent, history=history)
    return ProspectPlan(address, row.timezone, steps, row.state)


def plan_csv(app: Workspace, seq: Sequence, csv: Path) -> tuple[list[ProspectPlan],
                                                                   list[str]]:
    """The plan of each row of a CSV as if enrolled now (rows that enroll would reject are
    listed as problems, ``file:line: reason``)."""
    now = app.clock()
    plans: list[ProspectPlan] = []
    problems: list[str] = []
    for item in read_prospects(csv, check=lambda p: schedule.row_problem(seq, p.fields)):
        if not isinstance(item, Prospect):
            problems.append(f"{csv}:{item.line}: {item.email or ''}: {item.reason}")
            continue
        who = Recipient(item.email, item.timezone, item.fields)
        plans.append(ProspectPlan(item.email, item.timezone or seq.timezone,
                                  schedule.plan(seq, who, now, previous=now)))
    return plans, problems


def plan_text(plans: Iterable[ProspectPlan]) -> str:
    """``sequencer plan`` for people: one block per prospect, a line per step."""
    lines: list[str] = []
    for p in plans:
        tz = ZoneInfo(p.timezone)
        state = f", {p.state}" if p.state else ""
        lines.append(f"{p.email} ({p.timezone}{state})")
        for s in p.steps:
            local = s.at.astimezone(tz).strftime("%a %Y-%m-%d %H:%M:%S %Z")
            moved = ", ".join(m.value for m in s.moved_by)
            what = "sent" if s.sent else (f"moved by {moved}" if moved else "")
            lines.append(f"  {s.step:<20} {local:<28} {_utc(s.at):<21} {what}".rstrip())
    return "\n".join(lines)


def _lookback(seq: Sequence) -> timedelta:
    return max(WEEK, seq.pacing.min_gap or timedelta(0))


# --- sequencer plan --capacity ---------------------------------------------------------


@dataclass
class DayLoad:
    """One mailbox on one (UTC) day: steps that fall due, and those that go out."""

    due: int = 0
    sent: int = 0


@dataclass
class Capacity:
    mailbox: str
    daily_limit: int | None
    days: dict[date, DayLoad] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"mailbox": self.mailbox, "daily_limit": self.daily_limit,
                "days": [{"day": day.isoformat(), "due": load.due, "sends": load.sent,
                          "held_over": load.due - load.sent if load.due > load.sent else 0}
                         for day, load in sorted(self.days.items())]}


def capacity(app: Workspace, days: int = 14) -> list[Capacity]:
    """Per mailbox, how many sends go out on each of the next ``days`` (UTC) days once
    every limit applies: each active enrollment's steps as the scheduler would send them
    (windows, holidays, pacing), then the mailbox's ``daily_limit``, which holds the rest
    over to the next day (where the window applies again, and their later steps move)."""
    now = app.clock()
    horizon = _day_start(now) + timedelta(days=days)
    limits = {name: mb.daily_limit for name, mb in app.settings.mailboxes.items()}
    out = {name: Capacity(name, limits[name]) for name in sorted(limits)}
    with app.store.read() as conn:
        rows = conn.execute(select(enrollments).where(enrollments.c.state == ACTIVE)
                            .order_by(enrollments.c.next_due, enrollments.c.id)).all()
        history: dict[str, list[datetime]] = defaultdict(list)
        used: dict[tuple[str, date], int] = defaultdict(int)
        for s in conn.execute(select(sends.c.mailbox, sends.c.created_at, sends.c.done_at,
                                     enrollments.c.email_key)
                              .join(enrollments, enrollments.c.id == sends.c.enrollment_id)
                              .where(sends.c.created_at >= now - timedelta(days=60),
                                     sends.c.status != SendStatus.FAILED.value)).all():
            history[s.email_key].append(s.done_at or s.created_at)
            used[(s.mailbox, s.created_at.date())] += 1
    queue: list[tuple[datetime, int, int]] = []
    facts: dict[int, tuple[Sequence, Recipient]] = {}
    box_of: dict[int, str] = {}  # each enrollment sends from the mailbox it was given

    def falls_due(at: datetime, eid: int, index: int) -> None:
        box = box_of[eid]
        if at < horizon:
            counter = out.setdefault(box, Capacity(box, limits.get(box)))
            counter.days.setdefault(at.date(), DayLoad()).due += 1
        heapq.heappush(queue, (at, eid, index))

    for row in rows:
        seq = app.sequences.get(row.sequence)
        if seq is None or row.next_due is None or row.step_index >= len(seq.steps):
            continue
        facts[row.id] = (seq, Recipient(row.email, row.timezone, row.vars or {},
                                        row.not_before))
        box_of[row.id] = row.mailbox
        falls_due(max(row.next_due, now), row.id, row.step_index)
    while queue:
        at, eid, index = heapq.heappop(queue)
        if at >= horizon:
            continue
        seq, who = facts[eid]
        held = schedule.hold(seq, who, index, at, history[address_key(who.email)])
        if held.at > at:  # the claim holds it back (pacing, window): due again then
            heapq.heappush(queue, (held.at, eid, index))
            continue
        mailbox, day = box_of[eid], at.date()
        limit = limits.get(mailbox)
        if limit is not None and used[(mailbox, day)] >= limit:  # held over to tomorrow
            heapq.heappush(queue, (_day_start(at) + timedelta(days=1), eid, index))
            continue
        used[(mailbox, day)] += 1
        out.setdefault(mailbox, Capacity(mailbox, limit)).days.setdefault(
            day, DayLoad()).sent += 1
        history[address_key(who.email)].append(at)
        facts[eid] = (seq, Recipient(who.email, who.timezone, who.fields))  # OOO applied
        nxt = schedule.due(seq, facts[eid][1], index + 1, at)
        if nxt is not None:
            falls_due(nxt.at, eid, index + 1)
    for counter in out.values():
        for offset in range(days):
            counter.days.setdefault(_day_start(now).date() + timedelta(days=offset), DayLoad())
        for day in [d for d in counter.days if d >= horizon.date()]:
            del counter.days[day]
    return list(out.values())


def capacity_text(loads: Iterable[Capacity]) -> str:
    lines: list[str] = []
    for c in loads:
        limit = c.daily_limit if c.daily_limit is not None else "none"
        lines.append(f"mailbox {c.mailbox} (daily_limit {limit})")
        lines.append(f"  {'day (UTC)':<12} {'due':>6} {'sends':>6} {'held over':>10}")
        for day, load in sorted(c.days.items()):
            held = max(0, load.due - load.sent)
            lines.append(f"  {day.isoformat():<12} {load.due:>6} {load.sent:>6} {held:>10}")
    return "\n".join(lines)


def _day_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def as_mapping(plans: Iterable[ProspectPlan]) -> list[Mapping[str, object]]:
    return [p.as_dict() for p in plans]
