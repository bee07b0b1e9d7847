"""The per-enrollment state machine: pure functions, no I/O, no clock.

An enrollment is ``active`` until it halts (a reply, a bounce, an unsubscribe or a spam
complaint), completes its last step, fails permanently, or is stopped or paused by hand.
Each send of a step has its own status: ``claimed`` → ``sent`` | ``failed`` | ``unknown``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sequencer.errors import SequencerError


class EnrollmentState(StrEnum):
    ACTIVE = "active"
    REPLIED = "replied"
    BOUNCED = "bounced"
    UNSUBSCRIBED = "unsubscribed"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    PAUSED = "paused"


class SendStatus(StrEnum):
    CLAIMED = "claimed"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"


class Event(StrEnum):
    """Worker-log events; the values are the names printed in the log and stored."""

    ENROLLED = "enrolled"
    SENT = "sent"
    RETRYING = "retrying"
    FAILED = "failed"
    UNKNOWN = "unknown"  # extension: DATA went out, no reply seen; flagged, never resent
    REPLIED = "replied"
    AUTO_REPLY = "auto_reply"
    BOUNCED = "bounced"
    DELAYED = "delayed"  # extension: a mail system is still retrying; nothing failed yet
    UNSUBSCRIBED = "unsubscribed"
    COMPLETED = "completed"
    PAUSED = "paused"
    RESUMED = "resumed"
    STOPPED = "stopped"  # extension: `sequencer stop EMAIL`
    DEFERRED = "deferred"  # extension: a due step held back by pacing, a window or a holiday
    UNVERIFIED = "unverified"  # extension: a notice that proves nothing; changed nothing


class Inbound(StrEnum):
    """What an inbound message means for the enrollment it belongs to."""

    REPLY = "reply"
    AUTO_REPLY = "auto_reply"
    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE = "soft_bounce"
    DELAYED = "delayed"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"


class InvalidTransition(SequencerError, ValueError):
    """A manual action that makes no sense in the enrollment's state (e.g. resume a reply)."""

    def __init__(self, state: EnrollmentState, action: str) -> None:
        self.state = state
        self.action = action
        super().__init__(f"cannot {action} an enrollment that is {state.value}")


HALTED = frozenset(
    {EnrollmentState.REPLIED, EnrollmentState.BOUNCED, EnrollmentState.UNSUBSCRIBED}
)
FINAL = HALTED | {EnrollmentState.COMPLETED, EnrollmentState.FAILED, EnrollmentState.STOPPED}


@dataclass(frozen=True)
class Effect:
    """The outcome of an inbound message: the new state (or None), the event, suppress or not."""

    state: EnrollmentState | None
    event: Event
    suppress: bool = False
    delays: bool = False  # an auto-reply with a return date pushes the next step


def after_sent(step_index: int, step_count: int) -> tuple[EnrollmentState, int]:
    """State and next step index once step ``step_index`` was sent."""
    next_index = step_index + 1
    if next_index >= step_count:
        return EnrollmentState.COMPLETED, next_index
    return EnrollmentState.ACTIVE, next_index


_STOP_KEY = {
    Inbound.REPLY: "reply",
    Inbound.HARD_BOUNCE: "bounce",
    Inbound.COMPLAINT: "complaint",
    Inbound.UNSUBSCRIBE: "unsubscribe",
}


def on_inbound(state: EnrollmentState, inbound: Inbound, stop_on: frozenset[str]) -> Effect:
    """What an inbound message does to an enrollment in ``state``.

    Halts are final: a second reply to a replied enrollment changes nothing. A bounce,
    complaint or unsubscribe suppresses the address even when the sequence is already over
    or does not list it in ``stop_on`` (we never mail someone who asked us not to).
    """
    if inbound is Inbound.AUTO_REPLY:
        return Effect(None, Event.AUTO_REPLY, delays=state is EnrollmentState.ACTIVE)
    if inbound is Inbound.SOFT_BOUNCE:
        return Effect(None, Event.BOUNCED)
    if inbound is Inbound.DELAYED:
        return Effect(None, Event.DELAYED)
    suppress = inbound is not Inbound.REPLY
    event = {
        Inbound.REPLY: Event.REPLIED,
        Inbound.HARD_BOUNCE: Event.BOUNCED,
        Inbound.COMPLAINT: Event.UNSUBSCRIBED,
        Inbound.UNSUBSCRIBE: Event.UNSUBSCRIBED,
    }[inbound]
    target = {
        Inbound.REPLY: EnrollmentState.REPLIED,
        Inbound.HARD_BOUNCE: EnrollmentState.BOUNCED,
        Inbound.COMPLAINT: EnrollmentState.UNSUBSCRIBED,
        Inbound.UNSUBSCRIBE: EnrollmentState.UNSUBSCRIBED,
    }[inbound]
    halts = _STOP_KEY[inbound] in stop_on or suppress
    if state in HALTED or not halts:
        return Effect(None, event, suppress=suppress)
    if state in (EnrollmentState.COMPLETED, EnrollmentState.FAILED, EnrollmentState.STOPPED):
        # Over already: record what happened, keep the final state.
        return Effect(None, event, suppress=suppress)
    return Effect(target, event, suppress=suppress)


def pause(state: EnrollmentState) -> EnrollmentState:
    if state is not EnrollmentState.ACTIVE:
        raise InvalidTransition(state, "pause")
    return EnrollmentState.PAUSED


def resume(state: EnrollmentState) -> EnrollmentState:
    if state is not EnrollmentState.PAUSED:
        raise InvalidTransition(state, "resume")
    return EnrollmentState.ACTIVE


def stop(state: EnrollmentState) -> EnrollmentState:
    if state in FINAL:
        raise InvalidTransition(state, "stop")
    return EnrollmentState.STOPPED
