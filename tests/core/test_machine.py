"""The per-enrollment state machine: every transition, pure."""

from __future__ import annotations

import pytest

from sequencer.core import machine
from sequencer.core.machine import EnrollmentState as S
from sequencer.core.machine import Event, Inbound

ALL_STOPS = frozenset({"reply", "bounce", "unsubscribe", "complaint"})


def test_after_the_last_step_the_enrollment_is_completed() -> None:
    assert machine.after_sent(0, 3) == (S.ACTIVE, 1)
    assert machine.after_sent(2, 3) == (S.COMPLETED, 3)


@pytest.mark.parametrize(
    ("inbound", "state", "event", "suppress"),
    [
        (Inbound.REPLY, S.REPLIED, Event.REPLIED, False),
        (Inbound.HARD_BOUNCE, S.BOUNCED, Event.BOUNCED, True),
        (Inbound.UNSUBSCRIBE, S.UNSUBSCRIBED, Event.UNSUBSCRIBED, True),
        (Inbound.COMPLAINT, S.UNSUBSCRIBED, Event.UNSUBSCRIBED, True),
    ],
)
def test_halting_messages_halt_an_active_enrollment(
    inbound: Inbound, state: S, event: Event, suppress: bool
) -> None:
    effect = machine.on_inbound(S.ACTIVE, inbound, ALL_STOPS)
    assert (effect.state, effect.event, effect.suppress) == (state, event, suppress)
    paused = machine.on_inbound(S.PAUSED, inbound, ALL_STOPS)
    assert paused.state == state


def test_an_auto_reply_never_halts_and_delays_only_an_active_enrollment() -> None:
    effect = machine.on_inbound(S.ACTIVE, Inbound.AUTO_REPLY, ALL_STOPS)
    assert effect.state is None and effect.event is Event.AUTO_REPLY and effect.delays
    assert not machine.on_inbound(S.COMPLETED, Inbound.AUTO_REPLY, ALL_STOPS).delays


def test_a_soft_bounce_is_logged_and_the_sequence_goes_on() -> None:
    effect = machine.on_inbound(S.ACTIVE, Inbound.SOFT_BOUNCE, ALL_STOPS)
    assert effect.state is None and effect.event is Event.BOUNCED and not effect.suppress


def test_a_delayed_warning_is_its_own_event_and_changes_nothing() -> None:
    effect = machine.on_inbound(S.ACTIVE, Inbound.DELAYED, ALL_STOPS)
    assert (effect.state, effect.event, effect.suppress, effect.delays) == (
        None, Event.DELAYED, False, False)


def test_a_reply_does_not_halt_when_the_sequence_does_not_stop_on_replies() -> None:
    effect = machine.on_inbound(S.ACTIVE, Inbound.REPLY, frozenset({"bounce"}))
    assert effect.state is None and effect.event is Event.REPLIED


def test_an_unsubscribe_always_halts_and_suppresses_even_if_not_in_stop_on() -> None:
    effect = machine.on_inbound(S.ACTIVE, Inbound.UNSUBSCRIBE, frozenset({"reply"}))
    assert effect.state is S.UNSUBSCRIBED and effect.suppress


@pytest.mark.parametrize(
    "final", [S.REPLIED, S.BOUNCED, S.UNSUBSCRIBED, S.COMPLETED, S.FAILED, S.STOPPED]
)
def test_a_final_state_never_changes_on_inbound_mail(final: S) -> None:
    for inbound in Inbound:
        assert machine.on_inbound(final, inbound, ALL_STOPS).state is None


def test_manual_transitions_and_their_refusals() -> None:
    assert machine.pause(S.ACTIVE) is S.PAUSED
    assert machine.resume(S.PAUSED) is S.ACTIVE
    assert machine.stop(S.ACTIVE) is S.STOPPED
    assert machine.stop(S.PAUSED) is S.STOPPED
    with pytest.raises(
        machine.InvalidTransition, match="cannot pause an enrollment that is replied"
    ):
        machine.pause(S.REPLIED)
    with pytest.raises(machine.InvalidTransition):
        machine.resume(S.ACTIVE)
    with pytest.raises(machine.InvalidTransition):
        machine.stop(S.COMPLETED)


def test_event_names_are_the_worker_log_names() -> None:
    assert {e.value for e in Event} >= {
        "enrolled",
        "sent",
        "retrying",
        "failed",
        "replied",
        "auto_reply",
        "bounced",
        "unsubscribed",
        "completed",
        "paused",
        "resumed",
    }
