"""Properties of the due-time computation (hypothesis): whatever the moment, zone, window,
calendar and pacing, a computed time is inside the window, on an open day, never before
its wait, monotonic across steps, and right across DST transitions."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sequencer.core import timing
from sequencer.core.spec import Pacing, SendWindow, Step, Wait
from sequencer.core.timing import Calendar, Moved, Rules

# Northern and southern hemisphere DST, 30- and 45-minute offsets, a 30-minute DST shift
# (Lord Howe), and zones without DST.
ZONES = [
    "America/New_York",
    "Europe/Berlin",
    "Australia/Sydney",
    "Australia/Adelaide",  # +09:30 / +10:30
    "Asia/Kolkata",  # +05:30, no DST
    "Australia/Lord_Howe",  # +10:30 / +11:00: the clocks move by 30 minutes
    "Pacific/Chatham",  # +12:45 / +13:45
    "America/Sao_Paulo",
    "UTC",
]
COUNTRY_SETS = [frozenset(), frozenset({"US"}), frozenset({"DE"}), frozenset({"AU"}),
                frozenset({"IN", "GB"})]
START = datetime(2025, 1, 1, tzinfo=UTC)
END = datetime(2028, 12, 31, tzinfo=UTC)


@cache
def transitions(zone: str) -> tuple[datetime, ...]:
    """Every instant in 2025-2028 at which ``zone``'s UTC offset changes."""
    tz = ZoneInfo(zone)
    found: list[datetime] = []
    t = START
    while t < END:
        nxt = t + timedelta(hours=6)
        if t.astimezone(tz).utcoffset() != nxt.astimezone(tz).utcoffset():
            lo, hi = t, nxt
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if mid.astimezone(tz).utcoffset() == lo.astimezone(tz).utcoffset():
                    lo = mid
                else:
                    hi = mid
            found.append(hi.replace(microsecond=0))
        t = nxt
    return tuple(found)


@st.composite
def moments(draw: st.DrawFn, zone: str) -> datetime:
    """Any instant, or one within two days of a DST transition of ``zone``."""
    near = transitions(zone)
    near_a_transition: bool = bool(near) and draw(st.booleans())
    if near_a_transition:
        base = draw(st.sampled_from(near))
        return base + timedelta(seconds=draw(st.integers(-2 * 86400, 2 * 86400)))
    return draw(st.datetimes(min_value=START.replace(tzinfo=None),
                             max_value=END.replace(tzinfo=None) - timedelta(days=60),
                             timezones=st.just(UTC)))


@st.composite
def windows(draw: st.DrawFn) -> SendWindow:
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    quarter = st.integers(0, 24 * 4 - 1)
    a, b = sorted(draw(st.lists(quarter, min_size=2, max_size=2, unique=True)))
    start = time(a // 4, (a % 4) * 15)
    end = time(b // 4, (b % 4) * 15) if b < 96 else time(23, 59)
    length = timedelta(minutes=15 * (b - a))
    spread = draw(st.sampled_from([timedelta(0), length / 2, length]))
    return SendWindow(days, start, end, spread=timedelta(seconds=int(spread.total_seconds())))


@st.composite
def rules(draw: st.DrawFn, zone: str) -> Rules:
    window = draw(st.none() | windows())
    pacing = Pacing(
        min_gap=draw(st.none() | st.sampled_from(
            [timedelta(hours=6), timedelta(days=1), timedelta(days=3)])),
        max_per_week=draw(st.none() | st.integers(1, 3)),
    )
    return Rules(ZoneInfo(zone), window, Calendar(draw(st.sampled_from(COUNTRY_SETS))), pacing)


@st.composite
def waits(draw: st.DrawFn) -> Wait:
    if draw(st.booleans()):
        return Wait(timedelta(0), business_days=draw(st.integers(1, 10)))
    return Wait(timedelta(seconds=draw(st.integers(0, 21 * 86400))))


@st.composite
def cases(draw: st.DrawFn) -> tuple[Rules, datetime]:
    zone = draw(st.sampled_from(ZONES))
    return draw(rules(zone)), draw(moments(zone))


def open_at(moment: datetime, r: Rules) -> bool:
    """Whether ``moment`` is allowed by the window and the calendar (by the local clock)."""
    local = moment.astimezone(r.tz)
    if r.calendar.holiday(local.date()):
        return False
    if r.window is None:
        return True
    return (local.weekday() in r.window.days
            and r.window.start <= local.time().replace(tzinfo=None) < r.window.end)


def keeps_pacing(moment: datetime, pacing: Pacing, history: list[datetime]) -> bool:
    if pacing.min_gap is not None and any(abs(moment - h) < pacing.min_gap for h in history):
        return False
    if pacing.max_per_week is not None:
        within = [h for h in history if h > moment - timing.WEEK]
        return len(within) < pacing.max_per_week
    return True


SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(cases(), st.text(max_size=8))
def test_an_open_slot_is_open_never_earlier_and_the_first_when_already_open(
    case: tuple[Rules, datetime], seed: str
) -> None:
    r, moment = case
    slot = timing.open_slot(moment, r, seed)
    assert slot.at >= moment
    assert open_at(slot.at, r)
    if open_at(moment, r):
        assert slot.at == moment and slot.moved_by == ()
    else:
        assert slot.moved_by
    assert timing.open_slot(slot.at, r, seed).at == slot.at  # settled stays settled


@SETTINGS
@given(cases(), st.lists(st.integers(-30 * 86400, 30 * 86400), max_size=6))
def test_settle_keeps_the_window_the_calendar_and_the_pacing(
    case: tuple[Rules, datetime], offsets: list[int]
) -> None:
    r, moment = case
    history = [moment + timedelta(seconds=s) for s in offsets if s <= 0]
    due = timing.settle(moment, r, "seed", history)
    assert due.at >= moment
    assert open_at(due.at, r)
    assert keeps_pacing(due.at, r.pacing, history)
    if open_at(moment, r) and keeps_pacing(moment, r.pacing, history):
        assert due.at == moment and due.moved_by == ()
    else:
        assert due.moved_by, "a moved step says what moved it"
    if Moved.PACING not in due.moved_by:
        assert due == timing.open_slot(moment, r, "seed")


@SETTINGS
@given(cases(), st.lists(waits(), min_size=1, max_size=5), st.text(max_size=5))
def test_steps_are_never_before_their_wait_and_monotonic(
    case: tuple[Rules, datetime], step_waits: list[Wait], email: str
) -> None:
    r, previous = case
    history: list[datetime] = []
    last = previous
    for index, wait in enumerate(step_waits):
        step = Step(name=f"s{index}", template="t", wait=wait)
        due = timing.step_due(previous=last, step=step, rules=r,
                              seed=timing.step_seed("seq", email, index), history=history)
        assert due.at >= timing.add_wait(last, wait, r.tz, r.calendar), "never before the wait"
        assert due.at >= last, "monotonic across steps"
        assert open_at(due.at, r)
        assert keeps_pacing(due.at, r.pacing, history)
        history.append(due.at)
        last = due.at


@st.composite
def lands_on_a_transition(draw: st.DrawFn) -> tuple[str, datetime, int]:
    """A moment ``days`` local days before a DST transition, at a wall-clock time within
    an hour of the transition's: the wait lands in the gap or the repeated hour."""
    zone = draw(st.sampled_from([z for z in ZONES if transitions(z)]))
    tz = ZoneInfo(zone)
    shift = draw(st.sampled_from(transitions(zone)))
    days = draw(st.integers(1, 5))
    wall = (shift - timedelta(seconds=1)).astimezone(tz).replace(tzinfo=None)
    wall += timedelta(seconds=draw(st.integers(-3600, 3600)))
    start = (wall - timedelta(days=days)).replace(tzinfo=tz).astimezone(UTC)
    return zone, start, days


@SETTINGS
@given(st.sampled_from(ZONES).flatmap(lambda z: st.tuples(st.just(z), moments(z),
                                                          st.integers(1, 40)))
       | lands_on_a_transition(),
       st.sampled_from(COUNTRY_SETS))
def test_day_waits_keep_the_local_wall_clock_across_dst(
    case: tuple[str, datetime, int], countries: frozenset[str]
) -> None:
    zone, moment, days = case
    tz = ZoneInfo(zone)
    local = moment.astimezone(tz)
    due = timing.add_wait(moment, Wait(timedelta(days=days)), tz).astimezone(tz)
    assert due.date() == local.date() + timedelta(days=days)
    target = datetime.combine(due.date(), local.time().replace(tzinfo=None))
    if exists(target, tz):
        assert due.replace(tzinfo=None) == target
    else:  # a DST gap swallowed that wall-clock time: the first instant after it
        assert due.replace(tzinfo=None) > target
        before = due.astimezone(UTC) - timedelta(seconds=1)
        assert before.astimezone(tz).replace(tzinfo=None) < target
    # Business days: the same wall clock, on a weekday that is not a holiday, n of them on.
    cal = Calendar(countries)
    n = days % 10 + 1
    biz = timing.add_wait(moment, Wait(timedelta(0), business_days=n), tz, cal).astimezone(tz)
    assert biz.weekday() < 5 and not cal.holiday(biz.date())
    skipped = [local.date() + timedelta(days=k) for k in range(1, (biz.date() - local.date()).days)]
    assert sum(1 for d in skipped if d.weekday() < 5 and not cal.holiday(d)) == n - 1


def exists(naive: datetime, tz: ZoneInfo) -> bool:
    return naive.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) == naive


@SETTINGS
@given(st.text(), st.integers(1, 10 * 3600))
def test_jitter_is_fixed_per_seed_and_inside_the_spread(seed: str, seconds: int) -> None:
    spread = timedelta(seconds=seconds)
    offset = timing.jitter(seed, spread)
    assert offset == timing.jitter(seed, spread)
    assert timedelta(0) <= offset < spread or (not seed and offset == timedelta(0))


@SETTINGS
@given(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1),
                    timezones=st.just(UTC)),
       st.lists(st.integers(-20 * 86400, 86400), max_size=8),
       st.sampled_from([None, timedelta(hours=1), timedelta(days=2)]),
       st.sampled_from([None, 1, 2, 4]))
def test_pace_is_the_earliest_time_that_keeps_both_limits(
    moment: datetime, offsets: list[int], gap: timedelta | None, per_week: int | None
) -> None:
    pacing = Pacing(gap, per_week)
    history = [moment + timedelta(seconds=s) for s in offsets]
    t = timing.pace(moment, pacing, history)
    assert t >= moment
    past = [h if h <= t else t for h in history]  # one on its way counts as sent now
    if gap is not None:
        assert all(abs(t - h) >= gap for h in history)
    if per_week is not None:
        assert sum(1 for h in past if h > t - timing.WEEK) < per_week
    if t > moment:  # a second earlier would break a limit
        earlier = t - timedelta(seconds=1)
        broken = (gap is not None and any(abs(earlier - h) < gap for h in history)) or (
            per_week is not None
            and sum(1 for h in history if h > earlier - timing.WEEK) >= per_week)
        assert broken


def test_the_transition_table_covers_both_hemispheres_and_the_half_hour_shift() -> None:
    for zone in ("America/New_York", "Australia/Sydney", "Australia/Adelaide",
                 "Australia/Lord_Howe"):
        assert len(transitions(zone)) == 8, zone  # two a year, 2025-2028
    assert transitions("Asia/Kolkata") == ()
    shift = transitions("Australia/Lord_Howe")[0]
    tz = ZoneInfo("Australia/Lord_Howe")
    offsets = {(shift + timedelta(seconds=s)).astimezone(tz).utcoffset() for s in (-1, 1)}
    assert offsets == {timedelta(hours=10, minutes=30), timedelta(hours=11)}
    assert date(2025, 4, 6) == transitions("Australia/Sydney")[0].astimezone(
        ZoneInfo("Australia/Sydney")).date()


@SETTINGS
@given(cases(), st.integers(-60, 120), st.sampled_from([timedelta(0), timedelta(days=3),
                                                         timedelta(weeks=2)]))
def test_ahead_of_is_never_before_the_previous_step_and_still_keeps_the_rules(
    case: tuple[Rules, datetime], days_ahead: int, lead: timedelta
) -> None:
    r, previous = case
    named = previous.astimezone(r.tz).date() + timedelta(days=days_ahead)
    step = Step(name="s", template="t", wait=Wait(timedelta(weeks=1)), ahead_of="decided_by",
                lead=lead)
    due = timing.step_due(previous=previous, step=step, rules=r, seed="x", ahead_date=named)
    assert due.at >= previous
    assert open_at(due.at, r)
    target = max(previous, timing.ahead_by(named, lead, r.tz))
    assert due.at >= target
    if open_at(target, r) and not r.pacing.active:
        assert due.at == target
