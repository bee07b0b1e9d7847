"""`sequencer plan` and the sender agree, as a property (issue 8, "what it must show" 1).

The plan (``schedule.plan``) computes every step at once. The engine gets there another
way: enroll and each send store the next step's time (``schedule.due``, no pacing), and the
scheduler, when that time comes, holds the step back while the window, the holidays or the
pacing say no (``schedule.hold``, the claim-time check), storing the later time and trying
again then. Whatever the sequence, zone, window, calendar, pacing and the prospect's mail
from other sequences, both give the same instant for every step."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from sequencer.core import schedule
from sequencer.core.schedule import Recipient
from sequencer.core.spec import Pacing, Sequence, Step
from tests.core.test_timing_properties import (
    COUNTRY_SETS,
    SETTINGS,
    ZONES,
    moments,
    waits,
    windows,
)


@st.composite
def sequences(draw: st.DrawFn, zone: str) -> Sequence:
    steps = tuple(Step(name=f"s{i}", template="t", wait=draw(waits()))
                  for i in range(draw(st.integers(1, 4))))
    pacing = Pacing(
        min_gap=draw(st.none() | st.sampled_from(
            [timedelta(hours=6), timedelta(days=1), timedelta(days=3)])),
        max_per_week=draw(st.none() | st.integers(1, 3)),
    )
    return Sequence(name="launch", mailboxes=("sales",), timezone=zone,
                    send_window=draw(st.none() | windows()), stop_on=frozenset({"reply"}),
                    steps=steps, path=Path("sequences/launch.yaml"),
                    holidays=draw(st.sampled_from(COUNTRY_SETS)), pacing=pacing)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Sequence, Recipient, datetime, list[datetime]]:
    zone = draw(st.sampled_from(ZONES))
    own = draw(st.none() | st.sampled_from(ZONES))  # the prospect's `timezone` column
    seq = draw(sequences(zone))
    start = draw(moments(own or zone))
    who = Recipient(draw(st.sampled_from(["ann@example.com", "Bo@Example.org"])), own)
    # the prospect's emails from other sequences: sent, or on their way
    others = sorted(start + timedelta(seconds=s)
                    for s in draw(st.lists(st.integers(-10 * 86400, 10 * 86400), max_size=4)))
    return seq, who, start, others


def as_the_engine_sends(seq: Sequence, who: Recipient, start: datetime,
                        others: list[datetime]) -> list[datetime]:
    """Each step's send time: the stored due time, then the claim-time hold, retried at
    the time it holds the step to, as the scheduler does on its ticks."""
    sent: list[datetime] = []
    previous = start
    for index in range(len(seq.steps)):
        found = schedule.due(seq, who, index, previous)
        assert found is not None
        at = found.at
        for _ in range(50):
            if not schedule.needs_hold(seq, who):
                break
            held = schedule.hold(seq, who, index, at, sorted([*others, *sent]))
            if held.at <= at:
                break
            at = held.at
        else:
            raise AssertionError("the hold never settled")
        sent.append(at)
        previous = at
    return sent


@SETTINGS
@given(cases())
def test_plan_gives_each_step_the_instant_the_engine_sends_it(
    case: tuple[Sequence, Recipient, datetime, list[datetime]]
) -> None:
    seq, who, start, others = case
    planned = schedule.plan(seq, who, start, previous=start, history=others)
    assert [p.at for p in planned] == as_the_engine_sends(seq, who, start, others)
    assert [p.step for p in planned] == [step.name for step in seq.steps]
