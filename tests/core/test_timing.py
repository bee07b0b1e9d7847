"""When the next step is due: waits, business days, windows, time zones, ahead_of."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from sequencer.core import timing
from sequencer.core.spec import Pacing, SendWindow, Step, Wait

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS = SendWindow(days=frozenset(range(5)), start=time(9), end=time(17))


def step(wait: Wait, **kw: object) -> Step:
    return Step(name="s", template="t", wait=wait, **kw)  # type: ignore[arg-type]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
        second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def due_at(
    *,
    previous: datetime,
    step: Step,
    tz: ZoneInfo,
    window: SendWindow | None = None,
    follow_up_by: date | None = None,
    not_before: datetime | None = None,
) -> datetime:
    """``step_due`` for a sequence with only a window (no holidays, pacing or jitter)."""
    return timing.step_due(previous=previous, step=step, rules=timing.Rules(tz, window),
                           ahead_date=follow_up_by, not_before=not_before).at


def fit_window(moment: datetime, window: SendWindow | None, tz: ZoneInfo) -> datetime:
    """The first instant at or after ``moment`` inside ``window`` (no holidays, no jitter)."""
    return timing.open_slot(moment, timing.Rules(tz, window)).at


def test_zero_wait_is_due_immediately() -> None:
    now = utc(2026, 11, 23, 20, 0)
    assert due_at(previous=now, step=step(Wait(timedelta(0))), tz=NY) == now


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
    due = fit_window(late, WEEKDAYS, NY)
    assert due.astimezone(NY) == datetime(2026, 11, 25, 9, 0, tzinfo=NY)


def test_send_window_moves_a_weekend_step_to_monday_and_keeps_a_step_inside_it() -> None:
    saturday = utc(2026, 11, 28, 15, 0)
    assert fit_window(saturday, WEEKDAYS, NY).astimezone(NY) == datetime(
        2026, 11, 30, 9, 0, tzinfo=NY
    )
    inside = utc(2026, 11, 24, 15, 0)  # Tuesday 10:00 New York
    assert fit_window(inside, WEEKDAYS, NY) == inside
    early = utc(2026, 11, 24, 12, 0)  # Tuesday 07:00 New York
    assert fit_window(early, WEEKDAYS, NY).astimezone(NY).time() == time(9, 0)
    assert fit_window(inside, None, NY) == inside


def test_ahead_of_sends_lead_before_the_named_date_but_never_before_the_previous_step() -> None:
    now = utc(2026, 11, 23, 12)
    s = step(Wait(timedelta(weeks=1)), ahead_of="follow_up_by", lead=timedelta(weeks=2))
    due = due_at(previous=now, step=s, tz=BERLIN, follow_up_by=date(2027, 1, 15))
    assert due == datetime(2027, 1, 1, 0, 0, tzinfo=BERLIN).astimezone(UTC)
    soon = due_at(previous=now, step=s, tz=BERLIN, follow_up_by=date(2026, 11, 30))
    assert soon == now
    without = due_at(previous=now, step=s, tz=BERLIN, follow_up_by=None)
    assert without == now + timedelta(weeks=1)


def test_an_out_of_office_return_pushes_the_step_past_it() -> None:
    now = utc(2026, 11, 23, 12)
    back = timing.back_after(date(2026, 12, 7), NY)
    assert back == datetime(2026, 12, 8, 0, 0, tzinfo=NY).astimezone(UTC)
    due = due_at(
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
        due = fit_window(base + timedelta(hours=hour), WEEKDAYS, NY).astimezone(NY)
        assert due.weekday() < 5 and time(9) <= due.time() < time(17)


# --- holidays, jitter, pacing, ahead_of (issue 8) -----------------------------------------

US = timing.Calendar(frozenset({"US"}))
DE = timing.Calendar(frozenset({"DE"}))


def test_business_days_skip_public_holidays_of_the_calendar() -> None:
    wednesday = datetime(2026, 11, 25, 10, 0, tzinfo=NY)  # the day before Thanksgiving
    one = Wait(timedelta(0), business_days=1)
    assert timing.add_wait(wednesday, one, NY).astimezone(NY).date() == date(2026, 11, 26)
    due = timing.add_wait(wednesday, one, NY, US).astimezone(NY)
    assert due == datetime(2026, 11, 27, 10, 0, tzinfo=NY)


def test_a_step_on_a_holiday_or_weekend_moves_to_the_next_open_slot() -> None:
    window = SendWindow(frozenset(range(5)), time(9), time(17))
    christmas = datetime(2026, 12, 25, 11, 0, tzinfo=BERLIN)  # Friday; Saturday is a holiday too
    due = timing.open_slot(christmas, timing.Rules(BERLIN, window, DE))
    assert due.at.astimezone(BERLIN) == datetime(2026, 12, 28, 9, 0, tzinfo=BERLIN)
    assert due.moved_by == (timing.Moved.HOLIDAY, timing.Moved.WEEKEND)
    plain = timing.open_slot(christmas, timing.Rules(BERLIN, window))
    assert plain.at == christmas.astimezone(UTC) and plain.moved_by == ()


def test_without_a_window_a_holiday_moves_the_step_to_the_next_open_day() -> None:
    # 2027-07-04 is a Sunday; the US observes it on Monday the 5th.
    fourth = datetime(2027, 7, 4, 14, 0, tzinfo=NY)
    due = timing.open_slot(fourth, timing.Rules(NY, None, US))
    assert due.at.astimezone(NY) == datetime(2027, 7, 6, 0, 0, tzinfo=NY)
    assert due.moved_by == (timing.Moved.HOLIDAY,)


def test_the_prospects_country_beats_the_sequence_list_and_none_turns_holidays_off() -> None:
    assert timing.calendar_for(None, "de") == DE
    assert timing.calendar_for(frozenset({"US"}), "DE") == DE
    assert timing.calendar_for(frozenset({"US"}), None) == US
    assert timing.calendar_for(frozenset({"US"}), "") == US
    assert timing.calendar_for(frozenset(), "DE") == timing.Calendar()
    assert timing.calendar_for(None, None) == timing.Calendar()


def test_a_sequence_without_window_pacing_or_holidays_sends_exactly_when_the_wait_is_over() -> None:
    rules = timing.Rules(NY)
    now = utc(2026, 11, 28, 3, 17, 11)  # a Saturday night
    history = [now - timedelta(minutes=1)]
    due = timing.step_due(previous=now, step=step(Wait(timedelta(hours=5))), rules=rules,
                          seed="x", history=history)
    assert due == timing.Due(now + timedelta(hours=5))


def test_jitter_spreads_steps_moved_to_the_opening_and_is_fixed_per_enrollment_and_step() -> None:
    window = SendWindow(frozenset(range(5)), time(9), time(17), spread=timedelta(minutes=30))
    rules = timing.Rules(NY, window)
    night = utc(2026, 11, 25, 3, 0)  # 22:00 in New York
    opening = datetime(2026, 11, 25, 9, 0, tzinfo=NY).astimezone(UTC)
    seeds = [timing.step_seed("trade-show", f"p{i}@example.com", 1) for i in range(50)]
    times = [timing.open_slot(night, rules, seed).at for seed in seeds]
    assert all(opening <= t < opening + timedelta(minutes=30) for t in times)
    assert len(set(times)) > 40, "a batch does not leave at 09:00:00 sharp"
    assert times == [timing.open_slot(night, rules, seed).at for seed in seeds]
    assert timing.step_seed("trade-show", "P0@Example.com", 1) == seeds[0]
    other_step = timing.open_slot(night, rules, timing.step_seed("trade-show", "p0@example.com", 2))
    assert other_step.at != times[0]
    inside = utc(2026, 11, 25, 15, 0)  # 10:00: inside the window, not moved, not spread
    assert timing.open_slot(inside, rules, seeds[0]).at == inside


def test_pacing_holds_a_step_and_the_window_still_applies_afterwards() -> None:
    window = SendWindow(frozenset(range(5)), time(9), time(17))
    rules = timing.Rules(NY, window, pacing=Pacing(min_gap=timedelta(days=2)))
    monday_10 = datetime(2026, 11, 23, 10, 0, tzinfo=NY).astimezone(UTC)
    other = datetime(2026, 11, 22, 20, 0, tzinfo=NY).astimezone(UTC)  # another sequence's email
    due = timing.settle(monday_10, rules, history=[other])
    assert due.at.astimezone(NY) == datetime(2026, 11, 24, 20, 0, tzinfo=NY) + timedelta(
        hours=13)  # 2 days after it is Tuesday 20:00, outside the window: Wednesday 09:00
    assert due.moved_by == (timing.Moved.PACING, timing.Moved.WINDOW)
    weekly = timing.Rules(NY, pacing=Pacing(max_per_week=2))
    sent = [monday_10 - timedelta(days=6), monday_10 - timedelta(days=1)]
    assert timing.settle(monday_10, weekly, history=sent).at == sent[0] + timing.WEEK


def test_ahead_of_follow_up_mid_march_lands_in_late_february_in_the_prospects_zone() -> None:
    la = ZoneInfo("America/Los_Angeles")
    window = SendWindow(frozenset(range(5)), time(9), time(17), spread=timedelta(minutes=30))
    s = step(Wait(timedelta(weeks=1)), ahead_of="decision_date", lead=timedelta(weeks=3))
    previous = utc(2027, 1, 20, 17, 0)
    due = timing.step_due(previous=previous, step=s, rules=timing.Rules(la, window),
                          seed="seed", ahead_date=date(2027, 3, 15))
    local = due.at.astimezone(la)
    assert local.date() == date(2027, 2, 22)  # a Monday, three weeks before the 15th
    assert time(9) <= local.time().replace(tzinfo=None) < time(9, 30)
    assert due.moved_by == (timing.Moved.AHEAD_OF, timing.Moved.WINDOW)


def test_ahead_of_a_date_named_tomorrow_goes_out_at_the_next_opening() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    window = SendWindow(frozenset(range(5)), time(9), time(17))
    s = step(Wait(timedelta(weeks=1)), ahead_of="follow_up_by", lead=timedelta(weeks=2))
    evening = datetime(2026, 11, 24, 19, 30, tzinfo=kolkata)  # Tuesday evening there
    due = timing.step_due(previous=evening, step=s, rules=timing.Rules(kolkata, window),
                          ahead_date=date(2026, 11, 25))
    assert due.at.astimezone(kolkata) == datetime(2026, 11, 25, 9, 0, tzinfo=kolkata)
    assert due.at == utc(2026, 11, 25, 3, 30)  # +05:30
    morning = datetime(2026, 11, 24, 10, 0, tzinfo=kolkata)  # the window is open: now
    due = timing.step_due(previous=morning, step=s, rules=timing.Rules(kolkata, window),
                          ahead_date=date(2026, 11, 25))
    assert due.at == morning.astimezone(UTC)


@pytest.mark.parametrize(("zone", "before", "after"), [
    # Southern hemisphere: DST starts on 2026-10-04 at 02:00 (the day is 23 hours long).
    ("Australia/Sydney", timedelta(hours=10), timedelta(hours=11)),
    ("Australia/Adelaide", timedelta(hours=9, minutes=30), timedelta(hours=10, minutes=30)),
    ("Australia/Lord_Howe", timedelta(hours=10, minutes=30), timedelta(hours=11)),
])
def test_windows_and_day_waits_across_the_southern_spring_forward(
    zone: str, before: timedelta, after: timedelta
) -> None:
    tz = ZoneInfo(zone)
    window = SendWindow(frozenset(range(7)), time(9), time(17))
    saturday = datetime(2026, 10, 3, 10, 0, tzinfo=tz)
    assert saturday.utcoffset() == before
    sunday = timing.add_wait(saturday, Wait(timedelta(days=1)), tz).astimezone(tz)
    assert sunday == datetime(2026, 10, 4, 10, 0, tzinfo=tz) and sunday.utcoffset() == after
    elapsed = sunday.astimezone(UTC) - saturday.astimezone(UTC)
    assert elapsed == timedelta(days=1) - (after - before)
    night = datetime(2026, 10, 3, 23, 0, tzinfo=tz)
    opens = timing.open_slot(night, timing.Rules(tz, window)).at.astimezone(tz)
    assert opens == datetime(2026, 10, 4, 9, 0, tzinfo=tz)


def test_a_window_opening_in_a_half_hour_dst_gap_opens_when_the_gap_ends() -> None:
    lord_howe = ZoneInfo("Australia/Lord_Howe")  # 2026-10-04 02:00 jumps to 02:30
    window = SendWindow(frozenset(range(7)), time(2, 0), time(4, 0))
    opens = timing.open_slot(datetime(2026, 10, 4, 1, 0, tzinfo=lord_howe),
                             timing.Rules(lord_howe, window)).at
    assert opens.astimezone(lord_howe).replace(tzinfo=None) == datetime(2026, 10, 4, 2, 30)
    vanished = SendWindow(frozenset(range(7)), time(2, 0), time(2, 20))  # never there that day
    next_day = timing.open_slot(datetime(2026, 10, 4, 1, 0, tzinfo=lord_howe),
                                timing.Rules(lord_howe, vanished)).at.astimezone(lord_howe)
    assert next_day == datetime(2026, 10, 5, 2, 0, tzinfo=lord_howe)


def test_kolkata_windows_follow_the_half_hour_offset() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    window = SendWindow(frozenset(range(5)), time(9), time(17))
    def fit(moment: datetime) -> datetime:
        return fit_window(moment, window, kolkata)

    assert fit(utc(2026, 11, 24, 3, 29)) == utc(2026, 11, 24, 3, 30)  # 08:59 -> 09:00
    assert fit(utc(2026, 11, 24, 11, 29)) == utc(2026, 11, 24, 11, 29)  # 16:59 stays
    assert fit(utc(2026, 11, 24, 11, 30)) == utc(2026, 11, 25, 3, 30)  # 17:00 -> tomorrow
