"""When is a step due? Pure functions; every clock reading comes in as an argument.

All instants are timezone-aware UTC ``datetime``s. Calendar arithmetic (days, weeks,
business days, send windows, holidays, dates named by the prospect) happens on the wall
clock of the prospect's time zone, so "2d" after a 10:00 send is 10:00 two days later
there, across a daylight-saving change too; seconds, minutes and hours are absolute.

One computation decides every due time: ``step_due`` (a step after the previous one) and
``settle`` (the first instant at or after a moment that the prospect's rules allow). The
sender, the scheduler's claim, ``resume``, the out-of-office delay and ``sequencer plan``
all call them, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from hashlib import blake2b
from types import MappingProxyType
from zoneinfo import ZoneInfo

import holidays as holiday_data

from sequencer.core.spec import COUNTRIES, Pacing, SendWindow, Sequence, Step, Wait

WEEK = timedelta(days=7)
_SEARCH_DAYS = 800  # an open day is always found long before this (holidays are sparse)


class Moved(StrEnum):
    """A rule that moved a step away from the end of its wait (``plan`` shows them)."""

    AHEAD_OF = "ahead_of"  # earlier: lead before the date the prospect named
    OUT_OF_OFFICE = "out_of_office"  # later: past the return date of an auto-reply
    WINDOW = "window"  # outside the send window's hours (or a weekday it leaves out)
    WEEKEND = "weekend"  # a Saturday or Sunday the send window leaves out
    HOLIDAY = "holiday"  # a public holiday of the prospect's country
    PACING = "pacing"  # too soon after another email to the prospect (min_gap/max_per_week)


@dataclass(frozen=True)
class Calendar:
    """Public holidays of ``countries`` (ISO 3166 alpha-2) close the whole local day."""

    countries: frozenset[str] = frozenset()

    def holiday(self, day: date) -> str | None:
        """The holiday's name when ``day`` is one in any of the countries, else None."""
        for country in sorted(self.countries):
            name = _holidays(country, day.year).get(day)
            if name:
                return name
        return None


@lru_cache(maxsize=4096)
def _holidays(country: str, year: int) -> Mapping[date, str]:
    # A read-only copy: the library's own objects fill in years lazily on lookup, which
    # is not something to share between threads.
    return MappingProxyType(dict(holiday_data.country_holidays(country, years=year).items()))


def calendar_for(setting: frozenset[str] | None, country: str | None) -> Calendar:
    """Whose holidays apply to one prospect.

    ``holidays: none`` (an empty set) turns them off; otherwise the prospect's own
    ``country`` column wins; a prospect without one gets the sequence's list; with neither
    there are no holidays.
    """
    if setting == frozenset():
        return Calendar()
    code = (country or "").strip().upper()
    if code in COUNTRIES:
        return Calendar(frozenset({code}))
    return Calendar(setting or frozenset())


@dataclass(frozen=True)
class Rules:
    """Everything that decides when one prospect's steps may go out."""

    tz: ZoneInfo
    window: SendWindow | None = None
    calendar: Calendar = Calendar()
    pacing: Pacing = Pacing()

    @classmethod
    def of(cls, seq: Sequence, timezone: str | None = None,
           country: str | None = None) -> Rules:
        """The rules of ``seq`` for a prospect in ``timezone`` (else the sequence's) and
        ``country`` (their CSV column, if any)."""
        return cls(ZoneInfo(timezone or seq.timezone), seq.send_window,
                   calendar_for(seq.holidays, country), seq.pacing)

    @property
    def slots(self) -> bool:
        """Whether some instants are closed (a window or holidays)."""
        return self.window is not None or bool(self.calendar.countries)


@dataclass(frozen=True)
class Due:
    at: datetime
    moved_by: tuple[Moved, ...] = ()


def as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def step_seed(sequence: str, email: str, step_index: int) -> str:
    """What the jitter of one step of one enrollment (prospect × sequence) derives from."""
    return f"{sequence}\x00{email.lower()}\x00{step_index}"


def jitter(seed: str, spread: timedelta) -> timedelta:
    """A fixed offset in [0, spread) for ``seed``, whole seconds; zero without a spread."""
    seconds = int(spread.total_seconds())
    if seconds <= 0 or not seed:
        return timedelta(0)
    digest = blake2b(seed.encode(), digest_size=8).digest()
    return timedelta(seconds=int.from_bytes(digest, "big") % seconds)


def add_wait(start: datetime, wait: Wait, tz: ZoneInfo,
             calendar: Calendar = Calendar()) -> datetime:
    """``start`` plus the wait; days/weeks and business days on the local wall clock.
    Business days skip Saturdays, Sundays and the calendar's holidays."""
    start = as_utc(start)
    if wait.business_days:
        local = start.astimezone(tz)
        day = local.date()
        left = wait.business_days
        while left:
            day += timedelta(days=1)
            if day.weekday() < 5 and not calendar.holiday(day):
                left -= 1
        return _local(day, local.time(), tz)
    whole_days = timedelta(days=wait.delta.days)
    rest = wait.delta - whole_days
    if whole_days:
        local = start.astimezone(tz)
        moved = _local(local.date() + whole_days, local.time(), tz)
        return moved + rest
    return start + rest


def open_slot(moment: datetime, rules: Rules, seed: str = "") -> Due:
    """The first instant at or after ``moment`` on an open day (in the window's days, not a
    holiday) and inside the window's hours. A step moved to a window's opening goes out
    ``jitter(seed, spread)`` after it. Without a window, a closed day moves the step to the
    start of the next open day."""
    moment = as_utc(moment)
    if not rules.slots:
        return Due(moment)
    window, tz = rules.window, rules.tz
    local = moment.astimezone(tz)
    moved: list[Moved] = []
    for offset in range(_SEARCH_DAYS):
        day = local.date() + timedelta(days=offset)
        if window is not None and day.weekday() not in window.days:
            _note(moved, Moved.WEEKEND if day.weekday() >= 5 else Moved.WINDOW)
            continue
        if rules.calendar.holiday(day):
            _note(moved, Moved.HOLIDAY)
            continue
        if window is None:
            return Due(moment if offset == 0 else start_of_day(day, tz), tuple(moved))
        if offset == 0 and _inside(local, day, window):
            return Due(moment)
        opening = _opening(day, window, tz, moment, seed)
        if offset == 0:
            _note(moved, Moved.WINDOW)
        if opening is not None:
            return Due(opening, tuple(moved))
    raise ValueError("no open slot within two years")  # unreachable with real calendars


def pace(moment: datetime, pacing: Pacing, history: Iterable[datetime]) -> datetime:
    """The earliest instant at or after ``moment`` at which one more email to the prospect
    keeps ``min_gap`` from each of their other emails (``history``) and stays within
    ``max_per_week`` in the 7 days up to it. An email in ``history`` later than the
    candidate (one on its way) counts as sent at the candidate."""
    t = as_utc(moment)
    if not pacing.active:
        return t
    times = sorted(as_utc(h) for h in history)
    while True:
        start = t
        if pacing.min_gap is not None:
            gap = pacing.min_gap
            for h in times:
                if t - gap < h < t + gap:
                    t = h + gap
        if pacing.max_per_week is not None:
            recent = [h for h in times if h > t - WEEK]
            if len(recent) >= pacing.max_per_week:
                t = max(t, recent[-pacing.max_per_week] + WEEK)
        if t == start:
            return t


def settle(moment: datetime, rules: Rules, seed: str = "",
           history: Iterable[datetime] = ()) -> Due:
    """The first instant at or after ``moment`` that is an open slot and keeps the pacing.
    A sequence without a window, holidays or pacing gets ``moment`` itself."""
    times = list(history)
    t = as_utc(moment)
    moved: list[Moved] = []
    while True:
        slot = open_slot(t, rules, seed)
        for reason in slot.moved_by:
            _note(moved, reason)
        paced = pace(slot.at, rules.pacing, times)
        if paced == slot.at:
            return Due(paced, tuple(moved))
        _note(moved, Moved.PACING)
        t = paced


def step_due(
    *,
    previous: datetime,
    step: Step,
    rules: Rules,
    seed: str = "",
    ahead_date: date | None = None,
    not_before: datetime | None = None,
    history: Iterable[datetime] = (),
) -> Due:
    """When ``step`` is due, given the previous step went out (or enrollment happened) at
    ``previous``.

    ``ahead_of``: when the prospect's row names a date (``ahead_date``, read from the
    step's ``ahead_of`` column), the step goes out ``lead`` before the start of that day
    instead of after its wait — but never before ``previous``. ``not_before`` (an
    out-of-office return) pushes the step past it. Then ``settle``: window, weekends,
    holidays, pacing against ``history`` (the prospect's other emails).
    """
    due = add_wait(previous, step.wait, rules.tz, rules.calendar)
    moved: list[Moved] = []
    if step.ahead_of and ahead_date is not None:
        target = max(as_utc(previous), ahead_by(ahead_date, step.lead, rules.tz))
        if target != due:
            moved.append(Moved.AHEAD_OF)
        due = target
    if not_before is not None and as_utc(not_before) > due:
        due = as_utc(not_before)
        moved.append(Moved.OUT_OF_OFFICE)
    settled = settle(due, rules, seed, history)
    return Due(settled.at, (*moved, *settled.moved_by))


def ahead_by(named: date, lead: timedelta | None, tz: ZoneInfo) -> datetime:
    """``lead`` before the start of the day the prospect named; whole days and weeks on
    the local calendar (3w before 15 March is 22 February at 00:00 across a DST change)."""
    lead = lead or timedelta(0)
    days = timedelta(days=lead.days)
    return start_of_day(named - days, tz) - (lead - days)


def start_of_day(day: date, tz: ZoneInfo) -> datetime:
    return _local(day, time(0, 0), tz)


def back_after(return_date: date, tz: ZoneInfo) -> datetime:
    """An out-of-office says the person is back on ``return_date``: the next step waits
    until the day after, so it does not land in the pile they come back to."""
    return start_of_day(return_date + timedelta(days=1), tz)


def _note(moved: list[Moved], reason: Moved) -> None:
    if reason not in moved:
        moved.append(reason)


def _inside(local: datetime, day: date, window: SendWindow) -> bool:
    """Whether a local wall-clock reading is on ``day`` within the window's hours."""
    return local.date() == day and window.start <= local.time().replace(tzinfo=None) < window.end


def _opening(day: date, window: SendWindow, tz: ZoneInfo, after: datetime,
             seed: str) -> datetime | None:
    """The first instant at or after ``after`` where the window opens on ``day`` (a DST
    fall-back can open it twice), moved by the jitter when that stays inside the window;
    None when it no longer opens that day (or vanished in a DST gap)."""
    offset = jitter(seed, window.spread)
    for opens in _instants(day, window.start, tz):
        if opens < after or not _inside(opens.astimezone(tz), day, window):
            continue
        spread = opens + offset
        if offset and _inside(spread.astimezone(tz), day, window):
            return spread
        return opens
    return None


def _instants(day: date, clock: time, tz: ZoneInfo) -> list[datetime]:
    """The UTC instants whose local wall clock reads ``clock`` on ``day``: one, two (a DST
    fall-back repeats it) or, in a DST gap, the instant the gap ends."""
    naive = datetime.combine(day, clock)
    found: list[datetime] = []
    for fold in (0, 1):
        instant = naive.replace(tzinfo=tz, fold=fold).astimezone(UTC)
        if instant.astimezone(tz).replace(tzinfo=None) == naive and instant not in found:
            found.append(instant)
    if found:
        return sorted(found)
    return [_gap_end(naive, tz)]


def _gap_end(naive: datetime, tz: ZoneInfo) -> datetime:
    """The instant a DST gap that swallowed ``naive`` ends (the clocks jumped forward)."""
    lo = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)  # before the jump
    hi = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)  # after it
    before = lo.astimezone(tz).utcoffset()
    steps = int((hi - lo).total_seconds())
    low, high = 0, steps
    while high - low > 1:
        mid = (low + high) // 2
        if (lo + timedelta(seconds=mid)).astimezone(tz).utcoffset() == before:
            low = mid
        else:
            high = mid
    return lo + timedelta(seconds=high)


def _local(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time: the first of two in a DST fall-back, the
    end of the gap for a time a DST jump skipped."""
    return _instants(day, clock, tz)[0]
