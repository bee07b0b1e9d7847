"""When the next step is due: waits, business days, windows, time zones, ahead_of."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from sequencer.core import timing
from sequencer.core.spec import SendWindow, Step, Wait

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS = SendWindow(days=frozenset(range(5)), start=time(9), end=time(17))


def step(wait: Wait, **kw: object) -> Step:
    return Step(name="s", template="t", wait=wait, **kw)  # type: ignore[arg-type]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_zero_wait_is_due_immediately() -> None:
    now = utc(2026, 11, 23, 20, 0)
    assert timing.due_at(previous=now, step=step(Wait(timedelta(0))), tz=NY) == now


def test_days_follow_the_local_wall_clock_across_dst() -> None:
    # 2026-11-01 is the end of DST in New York: a day is 25 hours long there.
    before = utc(2026, 10, 31, 14, 0)  # 10:00 EDT
    two_days = timing.add_wait(before, Wait(timedelta(days=2)), NY)
    assert two_days.astimezone(NY).time() == time(10, 0)
    assert two_days - before == timedelta(hours=49)
    hours = timing.add_wait(before, Wait(timedelta(hours=5)), NY)
    assert hours - before == timedelta(hours=5)


def test_a_wait_of_days_plus_hours_adds_both() -> None:
    start = utc(2026, 6, 1, 12)
    assert timing.add_wait(start, Wait(timedelta(days=1, hours=3)), BERLIN) == utc(2026, 6, 2, 15)


def test_business_days_skip_the_weekend_in_the_prospects_zone() -> None:
    friday = utc(2026, 11, 27, 15, 0)  # Friday 10:00 in New York
    due = timing.add_wait(friday, Wait(timedelta(0), business_days=3), NY)
    assert due.astimezone(NY).date() == date(2026, 12, 2)  # Wednesday
    assert due.astimezone(NY).time() == time(10, 0)


def test_send_window_moves_a_night_time_step_to_the_morning() -> None:
    late = utc(2026, 11, 24, 23, 30)  # Tuesday 18:30 in New York
    due = timing.fit_window(late, WEEKDAYS, NY)
    assert due.astimezone(NY) == datetime(2026, 11, 25, 9, 0, tzinfo=NY)


def test_send_window_moves_a_weekend_step_to_monday_and_keeps_a_step_inside_it() -> None:
    saturday = utc(2026, 11, 28, 15, 0)
    assert timing.fit_window(saturday, WEEKDAYS, NY).astimezone(NY) == datetime(
        2026, 11, 30, 9, 0, tzinfo=NY
    )
    inside = utc(2026, 11, 24, 15, 0)  # Tuesday 10:00 New York
    assert timing.fit_window(inside, WEEKDAYS, NY) == inside
    early = utc(2026, 11, 24, 12, 0)  # Tuesday 07:00 New York
    assert timing.fit_window(early, WEEKDAYS, NY).astimezone(NY).time() == time(9, 0)
    assert timing.fit_window(inside, None, NY) == inside


def test_ahead_of_sends_lead_before_the_named_date_but_never_before_the_previous_step() -> None:
    now = utc(2026, 11, 23, 12)
    s = step(Wait(timedelta(weeks=1)), ahead_of="follow_up_by", lead=timedelta(weeks=2))
    due = timing.due_at(previous=now, step=s, tz=BERLIN, follow_up_by=date(2027, 1, 15))
    assert due == datetime(2027, 1, 1, 0, 0, tzinfo=BERLIN).astimezone(UTC)
    soon = timing.due_at(previous=now, step=s, tz=BERLIN, follow_up_by=date(2026, 11, 30))
    assert soon == now
    without = timing.due_at(previous=now, step=s, tz=BERLIN, follow_up_by=None)
    assert without == now + timedelta(weeks=1)


def test_an_out_of_office_return_pushes_the_step_past_it() -> None:
    now = utc(2026, 11, 23, 12)
    back = timing.back_after(date(2026, 12, 7), NY)
    assert back == datetime(2026, 12, 8, 0, 0, tzinfo=NY).astimezone(UTC)
    due = timing.due_at(
        previous=now, step=step(Wait(timedelta(days=2))), tz=NY, not_before=back, window=WEEKDAYS
    )
    assert due.astimezone(NY) == datetime(2026, 12, 8, 9, 0, tzinfo=NY)


def test_a_local_time_in_the_spring_dst_gap_moves_forward() -> None:
    # 2027-03-14 02:30 does not exist in New York.
    start = datetime(2027, 3, 13, 2, 30, tzinfo=NY).astimezone(UTC)
    due = timing.add_wait(start, Wait(timedelta(days=1)), NY)
    assert due.astimezone(NY).hour == 3


def test_naive_datetimes_are_read_as_utc() -> None:
    assert timing.as_utc(datetime(2026, 1, 1, 12)) == utc(2026, 1, 1, 12)


@pytest.mark.parametrize("weekday_start", range(7))
def test_fit_window_always_lands_inside_the_window(weekday_start: int) -> None:
    base = utc(2026, 11, 23 + weekday_start, 3)
    for hour in range(0, 24, 5):
        due = timing.fit_window(base + timedelta(hours=hour), WEEKDAYS, NY).astimezone(NY)
        assert due.weekday() < 5 and time(9) <= due.time() < time(17)
