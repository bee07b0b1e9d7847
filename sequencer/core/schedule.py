"""One prospect's steps in one sequence: when each goes out and what moved it. Pure.

The sender (the next step after a send), the scheduler (a due step held back at claim time),
``resume``, the out-of-office delay, ``enroll`` and ``sequencer plan`` all ask this module,
which asks ``timing``: one computation, so the plan and the sender cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from sequencer.core import timing
from sequencer.core.spec import Sequence, Step, check_country
from sequencer.core.timing import Due, Moved, Rules

COUNTRY_COLUMN = "country"
# Dates a step can be due ahead of: far from both ends of the calendar, so a lead of up to
# five years before one (or a day after one) never leaves what ``datetime`` can hold.
DATE_RANGE = (date(1900, 1, 1), date(2999, 12, 31))


@dataclass(frozen=True)
class Recipient:
    """What the schedule needs to know about a prospect: the row's columns (``fields``),
    their time zone and an out-of-office return that holds their next step."""

    email: str
    timezone: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    not_before: datetime | None = None


@dataclass(frozen=True)
class Planned:
    """One step of a plan: when it goes (or went) out and which rules moved it."""

    index: int
    step: str
    at: datetime
    moved_by: tuple[Moved, ...] = ()
    sent: bool = False


def rules(seq: Sequence, who: Recipient) -> Rules:
    return Rules.of(seq, who.timezone, who.fields.get(COUNTRY_COLUMN))


def ahead_date(step: Step, fields: Mapping[str, str]) -> date | None:
    """The date in the step's ``ahead_of`` column, if the row has one (checked at enroll)."""
    if not step.ahead_of:
        return None
    value = (fields.get(step.ahead_of) or "").strip()
    try:
        named = date.fromisoformat(value) if value else None
    except ValueError:
        return None
    return named if named is not None and DATE_RANGE[0] <= named <= DATE_RANGE[1] else None


def row_problem(seq: Sequence, fields: Mapping[str, str]) -> str | None:
    """Why a CSV row cannot be scheduled by ``seq`` (None when it can): an ``ahead_of``
    column that holds something other than an ISO date, or a ``country`` that is not a
    code with a holiday calendar (when the sequence reads it)."""
    for column in sorted(seq.date_columns):
        value = (fields.get(column) or "").strip()
        if value:
            try:
                named = date.fromisoformat(value)
            except ValueError:
                return f"`{column}` is not an ISO date (YYYY-MM-DD): `{value}`"
            if not DATE_RANGE[0] <= named <= DATE_RANGE[1]:
                first, last = (d.isoformat() for d in DATE_RANGE)
                return f"`{column}` {value} is out of range ({first} … {last})"
    country = (fields.get(COUNTRY_COLUMN) or "").strip()
    if country and seq.reads_country:
        try:
            check_country(country)
        except ValueError as err:
            return f"`{COUNTRY_COLUMN}`: {err}"
    return None


def seed(seq: Sequence, who: Recipient, index: int) -> str:
    return timing.step_seed(seq.name, who.email, index)


def due(seq: Sequence, who: Recipient, index: int, previous: datetime,
        history: Iterable[datetime] = ()) -> Due | None:
    """When step ``index`` is due after ``previous`` (the previous step's send, or the
    enrollment); None past the last step."""
    if index >= len(seq.steps):
        return None
    step = seq.steps[index]
    return timing.step_due(previous=previous, step=step, rules=rules(seq, who),
                           seed=seed(seq, who, index), ahead_date=ahead_date(step, who.fields),
                           not_before=who.not_before, history=history)


def hold(seq: Sequence, who: Recipient, index: int, now: datetime,
         history: Iterable[datetime] = ()) -> Due:
    """A due step at claim time: ``now`` itself when the window, the calendar and the
    pacing allow it, else the first instant they do."""
    return timing.settle(now, rules(seq, who), seed(seq, who, index), history)


def needs_hold(seq: Sequence, who: Recipient) -> bool:
    """Whether a claim can be held back at all (a window, holidays or pacing)."""
    r = rules(seq, who)
    return r.slots or r.pacing.active


def plan(seq: Sequence, who: Recipient, now: datetime, *, step_index: int = 0,
         previous: datetime | None = None, next_due: datetime | None = None,
         sent: Iterable[tuple[int, datetime]] = (),
         history: Iterable[datetime] = ()) -> list[Planned]:
    """Every step of ``seq`` for ``who``: those already sent (``sent``: index and time),
    then the rest as the sender and the scheduler would send them if each went out when
    due. ``previous`` is when the last step went out (or the enrollment, or now for a
    row not enrolled yet); ``next_due`` the stored due time of step ``step_index``;
    ``history`` the prospect's emails from other sequences (sent or on their way)."""
    done = sorted(sent)
    others = sorted(history)
    out = [Planned(i, seq.steps[i].name, at, sent=True) for i, at in done
           if i < len(seq.steps)]
    times = others + [at for _, at in done]
    last = previous if previous is not None else (done[-1][1] if done else now)
    for index in range(step_index, len(seq.steps)):
        step = seq.steps[index]
        scheduled = timing.step_due(
            previous=last, step=step, rules=rules(seq, who), seed=seed(seq, who, index),
            ahead_date=ahead_date(step, who.fields),
            not_before=who.not_before if index == step_index else None, history=times)
        at, moved = scheduled.at, scheduled.moved_by
        if index == step_index and next_due is not None and next_due != at:
            held = hold(seq, who, index, max(next_due, now), times)
            at, moved = held.at, _merge(moved, held.moved_by)
        elif index == step_index and at < now:
            held = hold(seq, who, index, now, times)
            at, moved = held.at, _merge(moved, held.moved_by)
        out.append(Planned(index, seq.steps[index].name, at, moved))
        times.append(at)
        last = at
    return out


def _merge(first: tuple[Moved, ...], then: tuple[Moved, ...]) -> tuple[Moved, ...]:
    return (*first, *(reason for reason in then if reason not in first))
