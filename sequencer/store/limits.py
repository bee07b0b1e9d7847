"""Per-mailbox sending limits, kept in the database so that every scheduler and sender of
every process shares them: ``daily_limit`` (the mailbox's own calendar day),
``hourly_limit`` (any 60 minutes) and ``min_spacing`` (plus random jitter) between two sends.

Counting. A send is a ``sends`` row, counted on the day it was claimed. A step held back at
claim time (pacing, a window: a ``deferred`` event) never gets a row, and a claim given
back before DATA (the enrollment halted, the mailbox paused) has its row deleted, so
neither counts; a retried step counts once. The claim transaction counts and claims under
the mailbox's row lock (``FOR UPDATE SKIP LOCKED`` on PostgreSQL: a mailbox another
scheduler is claiming for is left out this tick; SQLite serializes every write), so N
schedulers together never claim more than the limit.

Spacing is a turn: ``next_send_at`` and the claim holding the turn (``send_holder``). A
claim from a spaced mailbox takes the turn for its lease; the gate right before DATA takes
it again (a stale claim whose turn ran out, while another took it, sends nothing and is
given back); once the server answered, the turn ends at that moment plus ``min_spacing``
plus a random part of the jitter. The next DATA therefore starts at least ``min_spacing``
after the previous one was accepted. A sender that dies mid-send leaves the turn until its
hold runs out.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, bindparam, case, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from sequencer.store.db import Store
from sequencer.store.schema import mailboxes, sends


@dataclass(frozen=True)
class MailboxLimits:
    daily: int | None = None
    hourly: int | None = None
    spacing: timedelta = timedelta(0)
    jitter: timedelta = timedelta(0)
    timezone: str = "UTC"

    @property
    def spaced(self) -> bool:
        return self.spacing > timedelta(0)

    def day_start(self, now: datetime) -> datetime:
        """The start of ``now``'s day on the mailbox's own calendar (an aware datetime)."""
        local = now.astimezone(ZoneInfo(self.timezone))
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        # A day that starts in a DST gap or fold: ``astimezone`` normalises it.
        return midnight.astimezone(ZoneInfo("UTC"))

    def next_turn(self, now: datetime) -> datetime:
        """When the mailbox may send again after a send finished ``now``."""
        extra = random.uniform(0.0, self.jitter.total_seconds()) if self.jitter else 0.0
        return now + self.spacing + timedelta(seconds=extra)


@dataclass
class Budgets:
    """One claim transaction's view of the limits: how many new sends each limited mailbox
    may still claim, and which mailboxes are closed for the rest of the transaction."""

    left: dict[str, int] = field(default_factory=dict)
    spaced: set[str] = field(default_factory=set)
    closed: set[str] = field(default_factory=set)

    def allows(self, mailbox: str, new: bool) -> bool:
        if mailbox in self.closed:
            return False
        return not new or self.left.get(mailbox, 1) > 0

    def took(self, conn: Connection, mailbox: str, token: str, new: bool, now: datetime,
             until: datetime) -> None:
        """A claim from ``mailbox`` was made (``new``: it created a send row)."""
        if new and mailbox in self.left:
            self.left[mailbox] -= 1
            if self.left[mailbox] <= 0:
                self.closed.add(mailbox)
        if mailbox in self.spaced:
            conn.execute(_HOLD, {"m": mailbox, "tok": token, "until": until})
            self.closed.add(mailbox)


def _since(column: str) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((sends.c.created_at >= bindparam(column), 1),
                                       else_=0)), 0)


_USED = (select(_since("day_start"), _since("hour_start")).select_from(sends)
         .where(sends.c.mailbox == bindparam("m"), sends.c.created_at >= bindparam("since")))
_HOLD = (update(mailboxes).where(mailboxes.c.name == bindparam("m"))
         .values(next_send_at=bindparam("until"), send_holder=bindparam("tok")))
# At the gate: the claim ``tok`` may send from a spaced mailbox now (it holds the turn, or
# nobody does and the spacing is over); it then holds it until ``until``.
TAKE_TURN = (
    update(mailboxes)
    .where(mailboxes.c.name == bindparam("m"),
           or_(mailboxes.c.send_holder == bindparam("tok"),
               mailboxes.c.next_send_at.is_(None),
               mailboxes.c.next_send_at <= bindparam("now")))
    .values(next_send_at=bindparam("until"), send_holder=bindparam("tok"))
)
_END = (update(mailboxes)
        .where(mailboxes.c.name == bindparam("m"), mailboxes.c.send_holder == bindparam("tok"))
        .values(next_send_at=bindparam("at"), send_holder=None))
_NEW_ROW = {
    name: dialect.insert(mailboxes).values(name=bindparam("m"), last_uid=0, paused=False)
    .on_conflict_do_nothing(index_elements=[mailboxes.c.name])
    for name, dialect in (("sqlite", sqlite), ("postgresql", postgresql))
}


def open_budgets(conn: Connection, now: datetime, limits: Mapping[str, MailboxLimits],
                 *, lock: bool, skip: Collection[str] = ()) -> Budgets:
    """Count what each mailbox in ``limits`` may still send now (``skip``: closed anyway).

    With ``lock`` (PostgreSQL) the mailboxes' rows are locked for the transaction first; a
    mailbox whose row another transaction holds is closed this time."""
    budgets = Budgets()
    names = sorted(set(limits) - set(skip))
    if not names:
        return budgets
    rows = {r.name: r for r in conn.execute(
        select(mailboxes.c.name, mailboxes.c.next_send_at)
        .where(mailboxes.c.name.in_(names)))}
    missing = [n for n in names if n not in rows]
    if missing:
        new_row = _NEW_ROW.get(conn.dialect.name, insert(mailboxes).values(
            name=bindparam("m"), last_uid=0, paused=False))
        conn.execute(new_row, [{"m": n} for n in missing])
    if lock:
        held = {r.name: r for r in conn.execute(
            select(mailboxes.c.name, mailboxes.c.next_send_at)
            .where(mailboxes.c.name.in_(names))
            .with_for_update(skip_locked=True))}
        budgets.closed |= set(names) - set(held)
        rows = held
    for name in names:
        if name in budgets.closed:
            continue
        rule = limits[name]
        row = rows.get(name)
        if rule.spaced:
            budgets.spaced.add(name)
            if row is not None and row.next_send_at is not None and row.next_send_at > now:
                budgets.closed.add(name)
                continue
        if rule.daily is None and rule.hourly is None:
            continue
        day_start, hour_start = rule.day_start(now), now - timedelta(hours=1)
        day_used, hour_used = conn.execute(_USED, {
            "m": name, "since": min(day_start, hour_start), "day_start": day_start,
            "hour_start": hour_start}).one()
        left = [n for n in (
            None if rule.daily is None else rule.daily - day_used,
            None if rule.hourly is None else rule.hourly - hour_used) if n is not None]
        budgets.left[name] = min(left)
        if budgets.left[name] <= 0:
            budgets.closed.add(name)
    return budgets


def sends_today(conn: Connection, mailbox: str, rule: MailboxLimits, now: datetime) -> int:
    """What ``daily_limit`` has counted for ``mailbox`` today (its own calendar day): the
    same count the claim makes."""
    return int(conn.execute(_USED, {"m": mailbox, "since": rule.day_start(now),
                                    "day_start": rule.day_start(now),
                                    "hour_start": now}).one()[0])


def end_turn(store: Store, mailbox: str, token: str, next_at: datetime) -> None:
    """The claim ``token`` is done with the mailbox: nobody sends from it before
    ``next_at`` (``now`` when nothing went out)."""
    with store.write() as conn:
        conn.execute(_END, {"m": mailbox, "tok": token, "at": next_at})
