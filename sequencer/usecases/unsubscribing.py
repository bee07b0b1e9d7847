"""An unsubscribe link was used: check its token, then halt and suppress the way the inbox
watcher does for an emailed "unsubscribe" (``store.inbox.halt``, one event, one log line).

A token acts once. The first valid POST halts the enrollment, suppresses the address (which
halts the prospect's other active enrollments too) and logs ``unsubscribed``; any later POST
of that token, or of another link of an address that is already suppressed and whose
enrollment is over, is answered as done and changes nothing (no second event).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sequencer.core import machine
from sequencer.core.machine import EnrollmentState
from sequencer.core.unsubscribe import InvalidToken, Tokens
from sequencer.errors import StoreConflict
from sequencer.eventlog import EventRecord, emit
from sequencer.store import inbound as store_inbound
from sequencer.store.halting import suppressed
from sequencer.workspace import Workspace

_OPEN = frozenset({EnrollmentState.ACTIVE.value, EnrollmentState.PAUSED.value})
_DEFAULT_STOP_ON = frozenset({"reply", "bounce", "unsubscribe", "complaint"})


class Outcome(StrEnum):
    UNSUBSCRIBED = "unsubscribed"  # this request did it
    ALREADY = "already"  # done before: nothing changed


@dataclass(frozen=True)
class Link:
    """A token that checked out: the message it came in and the enrollment it belongs to."""

    message_id: str
    target: store_inbound.Target


def resolve(app: Workspace, tokens: Tokens, token: str) -> Link | None:
    """The enrollment behind ``token``, or None for a token we did not mint for it
    (malformed, forged, altered, swapped, or naming a message we never sent)."""
    try:
        ref = tokens.read(token)
    except InvalidToken:
        return None
    target = store_inbound.match(app.store, "", references=[ref.message_id])
    if target is None:
        return None
    if not tokens.valid(ref, enrollment_id=target.enrollment_id, email=target.email):
        return None
    return Link(ref.message_id, target)


def done(app: Workspace, link: Link) -> bool:
    """Nothing left to do: the address is suppressed and the enrollment is over."""
    return link.target.state not in _OPEN and suppressed(app.store, link.target.email)


def unsubscribe(app: Workspace, link: Link, via: str) -> Outcome:
    """Halt and suppress for a checked link; ``via`` says how (for the event's detail)."""
    if done(app, link):
        return Outcome.ALREADY
    target = link.target
    now = app.clock()
    seq = app.sequences.get(target.sequence)
    effect = machine.on_inbound(EnrollmentState(target.state), machine.Inbound.UNSUBSCRIBE,
                                seq.stop_on if seq else _DEFAULT_STOP_ON)
    record = EventRecord(effect.event, now, email=target.email, mailbox=target.mailbox,
                         sequence=target.sequence, message_id=link.message_id,
                         detail=f"unsubscribe link: {via}", enrollment_id=target.enrollment_id)
    seen = store_inbound.Seen(target.mailbox, f"unsubscribe-link:{link.message_id}",
                            "unsubscribe")
    try:
        applied = store_inbound.halt(app.store, target, effect.state or EnrollmentState(
            target.state), now, record, seen, suppress=f"unsubscribe: link ({via})")
    except StoreConflict:  # the same link, handled at the same moment by another request
        return Outcome.ALREADY
    if not applied:
        return Outcome.ALREADY
    emit(record)
    return Outcome.UNSUBSCRIBED
