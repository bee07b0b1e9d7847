"""Inbound mail → what it means → the enrollment's new state → store → log.

Called by the watchers for every message they find. Never raises for a bad message: a
hostile or unreadable one is logged and skipped, and the watcher keeps running.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from zoneinfo import ZoneInfo

from sequencer.config import Settings
from sequencer.core import machine, schedule, timing, trust
from sequencer.core.addresses import AddressError, address_key
from sequencer.core.classify import Kind, Verdict, classify
from sequencer.core.company import company_of, free_mail_with
from sequencer.core.machine import EnrollmentState, Event
from sequencer.core.schedule import Recipient
from sequencer.errors import RetryLater, StoreError
from sequencer.eventlog import EventRecord, emit
from sequencer.mail.watching import Inbound
from sequencer.store import inbound as store_inbound
from sequencer.store.colleagues import CompanyStop
from sequencer.store.inbound import Applied, Target
from sequencer.workspace import Workspace

logger = logging.getLogger(__name__)

_MEANING = {
    Kind.REPLY: machine.Inbound.REPLY,
    Kind.AUTO_REPLY: machine.Inbound.AUTO_REPLY,
    Kind.COMPLAINT: machine.Inbound.COMPLAINT,
    Kind.UNSUBSCRIBE: machine.Inbound.UNSUBSCRIBE,
}


def meaning(verdict: Verdict) -> machine.Inbound | None:
    if verdict.kind is Kind.BOUNCE:
        if verdict.subkind == "delayed":
            return machine.Inbound.DELAYED
        return (machine.Inbound.SOFT_BOUNCE if verdict.bounce == "soft"
                else machine.Inbound.HARD_BOUNCE)
    return _MEANING.get(verdict.kind)


def own_addresses(settings: Settings) -> frozenset[str]:
    """Our mailboxes' addresses, as written and as keys (an IDN domain as its A-label)."""
    mine = [mb.sender_address for mb in settings.mailboxes.values()]
    return frozenset(mine) | frozenset(address_key(address) for address in mine)


def read(raw: bytes, settings: Settings, now: datetime) -> Verdict:
    """How the watcher reads one message: with our own addresses and the clock.

    ``sequencer classify`` calls this too, so it says what the watcher would have done.
    """
    return classify(raw, own_addresses=own_addresses(settings), now=now)


def handle(app: Workspace, mailbox: str, message: Inbound) -> EventRecord | None:
    """Classify one message and apply its effect; returns the event recorded, if any.

    A store failure raises ``RetryLater``: the watcher hands the message over again
    instead of skipping it, so a reply is never lost to a passing database error.
    """
    try:
        return _handle(app, mailbox, message)
    except StoreError as err:
        raise RetryLater(f"could not record inbound mail: {err}") from err


def _handle(app: Workspace, mailbox: str, message: Inbound) -> EventRecord | None:
    now = app.clock()
    verdict = read(message.raw, app.settings, now)
    key = verdict.message_id or "sha256:" + hashlib.sha256(message.raw).hexdigest()
    what = meaning(verdict)
    if what is None:
        logger.info("inbound %s uid %s: %s (%s)", mailbox, message.uid, verdict.kind.value,
                    verdict.reason)
        return None
    address = verdict.recipient if verdict.kind in (Kind.BOUNCE, Kind.COMPLAINT) \
        else verdict.sender
    target = store_inbound.match(app.store, mailbox, references=verdict.references,
                                 original=verdict.original_message_id, address=address)
    company = company_stop(app, mailbox, verdict, what, target)
    if target is None:
        seen = store_inbound.Seen(mailbox, key, verdict.kind.value, meaning=what.value,
                                  detail=f"company reply from {verdict.sender}")
        applied = (store_inbound.halt_colleagues(app.store, company, seen, now)
                   if company is not None else None)
        if applied is None:
            logger.info("inbound %s uid %s: %s from %s matches no enrollment (%s)", mailbox,
                        message.uid, verdict.kind.value, address or "?", verdict.reason)
            return None
        for colleague in applied.colleagues:
            emit(colleague)
        return applied.colleagues[0]
    decision = judge(app, mailbox, message.raw, verdict, what, target)
    detail = _detail(decision, verdict)
    if what is machine.Inbound.REPLY and verdict.sender \
            and not _same(verdict.sender, target.email):
        detail = f"{detail} from {verdict.sender}"  # someone else answered the thread
    seen = store_inbound.Seen(
        mailbox, key, verdict.kind.value, email_key=address_key(target.email),
        enrollment_id=target.enrollment_id, meaning=what.value,
        proof=decision.proof.value, action=decision.action.value, review=decision.review,
        about=target.via, detail=detail)
    record = _apply(app, target, verdict, what, decision, now, seen, company)
    if record is None:
        logger.info("inbound %s uid %s: %s already handled", mailbox, message.uid, key)
    return record


def company_stop(app: Workspace, mailbox: str, verdict: Verdict, what: machine.Inbound,
                 target: Target | None) -> CompanyStop | None:
    """The company stop a message calls for, or None (``docs/company.md``).

    Only a human reply counts, from an address that has a company (not free mail, not one
    of our own mailboxes' companies). In one of our threads it halts the thread's sequence,
    when that sequence lists ``company_reply`` and the enrollment is at the sender's
    company. Without a thread (the sender matched by address, or not enrolled at all) it
    halts the ``company_reply`` sequences of this mailbox in which someone at the sender's
    company was sent a step.
    """
    if what is not machine.Inbound.REPLY or verdict.sender is None:
        return None
    free = free_mail_with(app.settings.free_mail)
    company = company_of(verdict.sender, free)
    ours = {company_of(own, free) for own in own_addresses(app.settings)}
    if company is None or company in ours:
        return None
    base = CompanyStop(company, frozenset(), verdict.sender, verdict.message_id,
                       partial(company_of, free_mail=free))
    if target is not None and target.how == "message-id":
        seq = app.sequences.get(target.sequence)
        if seq is None or "company_reply" not in seq.stop_on \
                or company_of(target.email, free) != company:
            return None
        return replace(base, sequences=frozenset({seq.name}), exclude=target.enrollment_id)
    names = frozenset(seq.name for seq in app.sequences.values()
                      if mailbox in app.settings.mailboxes_of(seq.mailboxes)
                      and "company_reply" in seq.stop_on)
    if not names:
        return None
    return replace(base, sequences=names, mailbox=mailbox, needs_mailed=True,
                   exclude=target.enrollment_id if target else None)


def judge(app: Workspace, mailbox: str, raw: bytes, verdict: Verdict, what: machine.Inbound,
          target: Target) -> trust.Decision:
    """What this message proves about ``target``, and so what it may do (``core.trust``)."""
    quotes_ours = target.how == "message-id"
    auth, mailed = trust.NOTHING, False
    if not quotes_ours and what in _NEED_PROOF:
        box = app.settings.mailboxes.get(mailbox)
        auth = trust.authentication(raw, box.authserv_ids if box else ())
        if auth is not trust.NOTHING and what in _NOTICES:
            mailed = store_inbound.mailed(app.store, mailbox, target.email)
    evidence = trust.proof(what, quotes_ours=quotes_ours, auth=auth, sender=verdict.sender,
                           named=verdict.recipient, prospect=target.email, mailed=mailed)
    return trust.decide(what, evidence, from_prospect=_same(verdict.sender, target.email))


_NOTICES = frozenset({machine.Inbound.HARD_BOUNCE, machine.Inbound.SOFT_BOUNCE,
                      machine.Inbound.COMPLAINT})
_NEED_PROOF = _NOTICES | {machine.Inbound.UNSUBSCRIBE}


def _same(a: str | None, b: str) -> bool:
    try:
        return a is not None and address_key(a) == address_key(b)
    except AddressError:
        return False


def _detail(decision: trust.Decision, verdict: Verdict) -> str:
    if decision.action is trust.Action.REVIEW:
        return f"not acted on: {decision.why} ({verdict.reason})"
    if decision.review:
        return f"{verdict.reason}; halted, not suppressed: {decision.why}"
    return verdict.reason


def _apply(app: Workspace, target: Target, verdict: Verdict, what: machine.Inbound,
           decision: trust.Decision, now: datetime, seen: store_inbound.Seen,
           company: CompanyStop | None = None) -> EventRecord | None:
    seq = app.sequences.get(target.sequence)
    stop_on = seq.stop_on if seq else frozenset({"reply", "bounce", "unsubscribe",
                                                 "complaint"})
    effect = machine.on_inbound(EnrollmentState(target.state), what, stop_on)

    def event(kind: Event, detail: str) -> EventRecord:
        return EventRecord(kind, now, email=target.email, mailbox=target.mailbox,
                           sequence=target.sequence, message_id=verdict.message_id,
                           detail=detail, enrollment_id=target.enrollment_id)

    action = decision.action
    record = event(effect.event, seen.detail or verdict.reason)
    applied: Applied | bool | None
    if action is trust.Action.REVIEW:
        record = event(Event.UNVERIFIED, f"{what.value} {seen.detail}")
        applied = store_inbound.note(app.store, record, seen, now)
    elif action is trust.Action.COUNT:
        rule = app.settings.soft_bounces
        within = timedelta(seconds=rule.within_s)

        def counted(n: int, suppressed: bool) -> EventRecord:
            window = f"{n} of {rule.suppress_after} soft bounces within {_span(within)}"
            if suppressed:
                return event(Event.BOUNCED, f"address suppressed: {window} ({verdict.reason})")
            return event(Event.BOUNCED, f"soft bounce, sequence goes on: {window} "
                                        f"({verdict.reason})")

        found = store_inbound.soft_bounce(app.store, target, seen, now,
                                          count=rule.suppress_after, within=within,
                                          record=counted)
        if found is not None:
            record = found
        applied = found is not None
    elif action is trust.Action.DELAY and effect.delays and verdict.return_date is not None:
        tz = ZoneInfo(target.timezone)
        back = timing.back_after(verdict.return_date, tz)
        due = target.next_due
        new_due = back if due is None or due < back else None
        if new_due is not None and seq is not None:  # then into the window, off holidays
            who = Recipient(target.email, target.timezone, target.vars)
            new_due = schedule.hold(seq, who, target.step_index, new_due).at
        record = event(effect.event, f"back on {verdict.return_date.isoformat()}; next step "
                                     f"not before {back.strftime('%Y-%m-%d %H:%M')}Z")
        applied = store_inbound.delay(app.store, target, back, new_due, record, seen, now)
    elif action is trust.Action.SUPPRESS:
        applied = store_inbound.halt(
            app.store, target, effect.state or EnrollmentState(target.state), now, record,
            seen, suppress=f"{what.value} ({decision.proof.value}): {verdict.reason}")
    elif action is trust.Action.HALT and effect.state is not None:
        applied = store_inbound.halt(app.store, target, effect.state, now, record, seen,
                                     company=company)
    else:
        applied = store_inbound.note(app.store, record, seen, now, company=company)
    if not applied:
        return None
    emit(record)
    for colleague in applied.colleagues if isinstance(applied, Applied) else ():
        emit(colleague)
    return record


def _span(span: timedelta) -> str:
    days = span / timedelta(days=1)
    return f"{days:g} days" if days >= 1 else f"{span.total_seconds():g}s"
