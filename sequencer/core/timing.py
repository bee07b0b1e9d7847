"""When is the next step due? Pure functions; every clock reading comes in as an argument.

All instants are timezone-aware UTC ``datetime``s. Calendar arithmetic (days, weeks,
business days, send windows, dates named by the prospect) happens on the wall clock of the
prospect's time zone, so "2d" after a 10:00 send is 10:00 two days later there, across a
daylight-saving change too; seconds, minutes and hours are absolute.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sequencer.core.spec import SendWindow, Step, Wait

UTC = UTC


def as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def add_wait(start: datetime, wait: Wait, tz: ZoneInfo) -> datetime:
    """``start`` plus the wait; days/weeks and business days on the local wall clock."""
    start = as_utc(start)
    if wait.business_days:
        local = start.astimezone(tz)
        day = local.date()
        left = wait.business_days
        while left:
            day += timedelta(days=1)
            if day.weekday() < 5:
                left -= 1
        return _local(day, local.timetz().replace(tzinfo=None), tz)
    whole_days = timedelta(days=wait.delta.days)
    rest = wait.delta - whole_days
    if whole_days:
        local = start.astimezone(tz)
        moved = _local(local.date() + whole_days, local.time(), tz)
        return moved + rest
    return start + rest


def fit_window(moment: datetime, window: SendWindow | None, tz: ZoneInfo) -> datetime:
    """The first instant at or after ``moment`` that falls inside the send window."""
    moment = as_utc(moment)
    if window is None:
        return moment
    local = moment.astimezone(tz)
    day = local.date()
    for offset in range(8):
        candidate_day = day + timedelta(days=offset)
        if candidate_day.weekday() not in window.days:
            continue
        opens = _local(candidate_day, window.start, tz)
        closes = _local(candidate_day, window.end, tz)
        if offset == 0:
            if moment < opens:
                return opens
            if moment < closes:
                return moment
            continue
        return opens
    return moment  # a window with no days cannot be built by spec; stay put


def start_of_day(day: date, tz: ZoneInfo) -> datetime:
    return _local(day, time(0, 0), tz)


def due_at(
    *,
    previous: datetime,
    step: Step,
    tz: ZoneInfo,
    window: SendWindow | None = None,
    follow_up_by: date | None = None,
    not_before: datetime | None = None,
) -> datetime:
    """When ``step`` is due, given the previous step went out (or enrollment happened) at
    ``previous``.

    ``ahead_of``: when the prospect named a date (``follow_up_by``), the step goes out
    ``lead`` before the start of that day instead of after its wait — but never before
    ``previous``. ``not_before`` (an out-of-office return) pushes the step past it.
    The result is then moved into the send window, if the sequence has one.
    """
    due = add_wait(previous, step.wait, tz)
    if step.ahead_of and follow_up_by is not None:
        lead = step.lead or timedelta(0)
        due = max(as_utc(previous), start_of_day(follow_up_by, tz) - lead)
    if not_before is not None:
        due = max(due, as_utc(not_before))
    return fit_window(due, window, tz)


def back_after(return_date: date, tz: ZoneInfo) -> datetime:
    """An out-of-office says the person is back on ``return_date``: the next step waits
    until the day after, so it does not land in the pile they come back to."""
    return start_of_day(return_date + timedelta(days=1), tz)


def _local(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time; a time skipped by DST moves forward."""
    naive = datetime.combine(day, clock)
    aware = naive.replace(tzinfo=tz)
    roundtrip = aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    if roundtrip != naive:  # in a DST gap: take the instant the gap ends
        aware = (naive + timedelta(hours=1)).replace(tzinfo=tz)
    return aware.astimezone(UTC)
