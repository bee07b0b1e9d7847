"""Sending one claimed step: render, compose, SMTP, record — at most once.

The order is the guarantee: the Message-ID was stored at claim time; the gate
(``HotPath.gate``) commits the point of no return right before DATA (and refuses when the
enrollment halted since the claim); the outcome is committed after the server's reply (a
250 in the sender's next batch commit, :func:`commit_outcomes`). Whatever kills the process
in between leaves a row the scheduler knows how to finish (see ``store.claims``).
"""

from __future__ import annotations

import logging
import os
import signal
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Protocol

from sequencer.core import machine, schedule
from sequencer.core.addresses import AddressError, sending_address
from sequencer.core.compose import compose
from sequencer.core.machine import EnrollmentState, Event, SendStatus
from sequencer.core.schedule import Recipient
from sequencer.core.spec import Sequence
from sequencer.core.unsubscribe import Tokens, link, mailto, wants_headers
from sequencer.errors import (
    AuthenticationError,
    DeliveryAborted,
    HeaderInjectionError,
    OutcomeUnknownError,
    PermanentDeliveryError,
    TemplateError,
    TLSRequiredError,
    TransientDeliveryError,
)
from sequencer.eventlog import EventRecord, emit
from sequencer.mail.smtp import SmtpAccount, SmtpSender
from sequencer.store import claims, limits, outcomes
from sequencer.store.claims import Job
from sequencer.store.hotpath import Gate, HotPath, Sent
from sequencer.templating.templates import RESERVED_COLUMNS
from sequencer.usecases.copying import SentCopies
from sequencer.workspace import Workspace

logger = logging.getLogger(__name__)

RETRY_BASE = timedelta(minutes=1)
RETRY_CAP = timedelta(hours=1)


def backoff(attempt: int, base: timedelta = RETRY_BASE, cap: timedelta = RETRY_CAP) -> timedelta:
    """1st retry after ``base``, then doubling, never more than ``cap``."""
    delay: timedelta = min(cap, base * (2 ** max(0, attempt - 1)))
    return delay


def smtp_account(app: Workspace, mailbox: str) -> SmtpAccount:
    box = app.mailbox(mailbox)
    cfg = box.smtp
    return SmtpAccount(
        host=cfg.host, port=cfg.port,
        username=box.oauth.username if box.oauth is not None else cfg.username,
        password=cfg.password.reveal() if cfg.password else None,
        tls=cfg.tls, timeout_s=cfg.timeout_s, tokens=app.tokens.get(mailbox),
    )


class Senders:
    """One reused SMTP connection per mailbox, per event loop (i.e. per worker thread).

    ``paused`` holds the mailboxes whose credentials or TLS failed in this process: nothing
    more is sent from them until a restart. The send threads of one process share one set.
    """

    def __init__(self, app: Workspace, paused: set[str] | None = None,
                 copies: SentCopies | None = None) -> None:
        self.app = app
        self.paused: set[str] = set() if paused is None else paused
        #: Where sent messages go to be copied to Sent (``save_sent``); None: nowhere.
        self.copies = copies
        self._senders: dict[str, SmtpSender] = {}

    def get(self, mailbox: str) -> SmtpSender:
        sender = self._senders.get(mailbox)
        if sender is None:
            sender = self._senders[mailbox] = SmtpSender(smtp_account(self.app, mailbox))
        return sender

    async def close(self) -> None:
        for sender in self._senders.values():
            await sender.close()
        self._senders.clear()


def next_due_after(seq: Sequence, job: Job, index: int, previous: datetime) -> datetime | None:
    """When step ``index`` of ``seq`` is due after ``previous``; None past the last step.
    Pacing and an out-of-office recorded since the claim are applied when it is claimed."""
    due = schedule.due(seq, Recipient(job.email, job.timezone, job.vars), index, previous)
    return None if due is None else due.at


_passes: Counter[str] = Counter()


def _crash(app: Workspace, point: str) -> None:
    """Tests only: ``SEQUENCER_TEST_CRASH_AT=POINT`` (or ``POINT:N``, the N-th pass there)
    kills this process right here."""
    wanted = app.settings.test_crash_at
    if wanted is None:
        return
    name, _, nth = wanted.partition(":")
    if name != point:
        return
    _passes[point] += 1
    if _passes[point] >= int(nth or 1):
        logger.warning("crash hook %s: killing the process", wanted)
        os.kill(os.getpid(), signal.SIGKILL)


def mailbox_limits(app: Workspace) -> dict[str, limits.MailboxLimits]:
    """Each configured mailbox's limits, as the claim and the gate apply them."""
    return {name: limits.MailboxLimits(
        daily=box.daily_limit, hourly=box.hourly_limit,
        spacing=timedelta(seconds=box.min_spacing_s),
        jitter=timedelta(seconds=box.spacing_jitter_s), timezone=box.timezone)
        for name, box in app.settings.mailboxes.items()}


class SendPath(Protocol):
    """Where a sender commits its gates and hands its 250s (``store.hotpath.HotPath``, or a
    pool of them)."""

    async def gate(self, job: Job, now: datetime, subject: str, hold: timedelta, *,
                   spaced: bool = False) -> Gate: ...

    def sent(self, outcome: Sent) -> None: ...


async def deliver(app: Workspace, job: Job, senders: Senders, path: SendPath) -> None:
    """Send the claimed step. Its 250 is handed to ``path`` (committed in the sender's next
    batch, :func:`commit_outcomes`); any other outcome is committed here. Never raises for
    delivery outcomes."""
    box = app.settings.mailboxes.get(job.mailbox)
    rule = None if box is None else mailbox_limits(app)[job.mailbox]
    if rule is None or not rule.spaced:
        await _deliver(app, job, senders, path, None)
        return
    turn = _Turn(rule)
    try:
        await _deliver(app, job, senders, path, turn)
    finally:  # the next send from this mailbox: min_spacing after this one was answered
        now = app.clock()
        limits.end_turn(app.store, job.mailbox, job.token,
                        rule.next_turn(now) if turn.passed else now)


class _Turn:
    """A spaced mailbox's turn, as one delivery holds it: did DATA go out?"""

    def __init__(self, rule: limits.MailboxLimits) -> None:
        self.rule = rule
        self.passed = False


async def _deliver(app: Workspace, job: Job, senders: Senders, path: SendPath,
                   turn: _Turn | None) -> None:
    seq = app.sequences.get(job.sequence)
    if seq is None or job.step_index >= len(seq.steps):
        _pause_for_settings(app, job, None, f"sequence {job.sequence!r} has no step "
                            f"{job.step_index + 1} under sequences/ (renamed, removed or "
                            "shortened?)")
        return
    step = seq.steps[job.step_index]
    mailbox = app.settings.mailboxes.get(job.mailbox)
    if mailbox is None:
        _pause_for_settings(app, job, step.name,
                            f"mailbox {job.mailbox!r} is not in the settings")
        return
    if job.mailbox in senders.paused:  # its credentials or TLS just failed here
        claims.release(app.store, job, app.clock())
        return
    base = _record(job, step.name, mailbox.name)
    try:
        unsubscribe = unsubscribe_link(app, message_id=job.message_id,
                                       enrollment_id=job.enrollment_id, email=job.email)
        rendered = app.templates.get(step.template).render(template_context(
            app, email=job.email, variables=job.vars, mailbox=job.mailbox,
            sequence=seq.name, step=step.name, unsubscribe_url=unsubscribe))
        thread = step.thread and job.thread_message_id is not None
        rcpt = sending_address(job.email)  # an IDN domain goes out as its A-label
        data = compose(
            sender=mailbox.sender, to=job.email, rendered=rendered,
            message_id=job.message_id, date=app.clock(),
            to_name=_full_name(job), in_reply_to=job.thread_message_id if thread else None,
            references=job.thread_references if thread else (),
            thread_subject=job.thread_subject if thread else None,
            list_unsubscribe=list_unsubscribe(app, seq, mailbox.sender_address, unsubscribe),
        )
    except AddressError as err:  # the prospect's address itself
        _finish_failed(app, job, None, f"cannot compose: {err}", base)
        return
    except (TemplateError, HeaderInjectionError) as err:  # the template or the settings
        _pause_for_settings(app, job, step.name, f"cannot compose step {step.name}: {err}")
        return
    except Exception as err:  # noqa: BLE001 - nothing went out: pausing is always safe
        logger.exception("composing %s/%s for %s failed", job.sequence, step.name, job.email)
        _pause_for_settings(app, job, step.name, f"cannot compose step {step.name}: "
                            f"{type(err).__name__}: {err}")
        return
    _crash(app, "after_claim")
    subject = rendered.subject if not thread else (job.thread_subject or rendered.subject)

    gate = Gate.HALTED

    hold = timedelta(seconds=2 * mailbox.smtp.timeout_s + 5)  # DATA, then the reply

    async def before_data() -> bool:
        nonlocal gate
        gate = await path.gate(job, app.clock(), subject, hold, spaced=turn is not None)
        if turn is not None:
            turn.passed = gate is Gate.GO
        if gate is Gate.GO:
            _crash(app, "after_gate")
        return gate is Gate.GO

    try:
        accepted = await senders.get(job.mailbox).send(
            mailbox.sender_address, rcpt, data, before_data=before_data)
    except DeliveryAborted:
        if gate is Gate.HALTED:
            claims.release(app.store, job, app.clock())
            logger.info("not sent: %s halted before DATA (%s/%s)", job.email, job.sequence,
                        step.name)
        elif gate is Gate.BUSY:  # a stale claim: its mailbox's turn was taken since
            claims.release(app.store, job, app.clock())
            logger.info("not sent yet: mailbox %s is sending another (min_spacing); %s/%s "
                        "is due again", job.mailbox, job.sequence, step.name)
        return
    except OutcomeUnknownError as err:
        if gate is not Gate.GO:
            return
        now = app.clock()
        rec = base(Event.UNKNOWN, now, f"no reply after DATA: {err}; not resent")
        if outcomes.record_final(app.store, job, now, send_status=SendStatus.UNKNOWN,
                             state=EnrollmentState.PAUSED, code=err.code, detail=str(err),
                             records=[rec], flag=f"step {step.name}: outcome unknown"):
            emit(rec)
        return
    except (AuthenticationError, TLSRequiredError) as err:
        _pause_mailbox(app, job, str(err), base, senders.paused,
                       auth=isinstance(err, AuthenticationError))
        return
    except PermanentDeliveryError as err:
        if err.ours and not err.recipient_rejected:
            _pause_for_settings(app, job, step.name, f"mailbox {job.mailbox}: the server "
                                f"refused our message ({err})", passed=gate is Gate.GO)
            return
        _finish_permanent(app, job, err, base, passed=gate is Gate.GO)
        return
    except TransientDeliveryError as err:
        _retry_or_fail(app, job, err, base, passed=gate is Gate.GO)
        return
    _crash(app, "after_250")
    now = app.clock()
    state, next_index = machine.after_sent(job.step_index, len(seq.steps))
    due = next_due_after(seq, job, next_index, now)
    records = [base(Event.SENT, now, None)]
    if state is EnrollmentState.COMPLETED:
        records.append(base(Event.COMPLETED, now, None, message_id=None))
    copy = data if senders.copies is not None and mailbox.copies_sent else None
    path.sent(Sent(job, now, code=accepted.code, state=state, next_index=next_index,
                   next_due=due, records=tuple(records), copy=copy))


def commit_outcomes(app: Workspace, path: HotPath, copies: SentCopies | None = None) -> int:
    """Commit the 250s queued on ``path`` in one transaction and log them; then hand the
    sent bytes to ``copies`` (after the record, never before). Returns how many were
    committed. A crash before this commit leaves those steps past the gate with no
    outcome: ``unknown`` after their lease, never resent."""
    done = path.flush(before_commit=lambda: _crash(app, "before_commit"))
    for item in done:
        for rec in item.records:
            emit(rec)
        if copies is not None and item.copy is not None:
            copies.submit(item.job.mailbox, item.copy, item.at)
    return len(done)


def template_context(app: Workspace, *, email: str, variables: Mapping[str, object], mailbox: str,
                     sequence: str, step: str, unsubscribe_url: str | None
                     ) -> dict[str, object]:
    """What a template sees: the CSV columns plus the built-in variables; ``unsubscribe_url``
    is this email's link, or (None) the ``mailto:`` of the mailbox."""
    # A column stored before names were reserved must not hide a function (range) or a
    # Jinja name; sequencer's own variables always win.
    context: dict[str, object] = {name: value for name, value in variables.items()
                                  if name not in RESERVED_COLUMNS}
    context.update(
        email=email, sender=sender_name(app.mailbox(mailbox).sender), sequence=sequence,
        step=step,
        unsubscribe_url=unsubscribe_url or mailto(app.mailbox(mailbox).sender_address),
    )
    return context


def unsubscribe_tokens(app: Workspace) -> Tokens | None:
    """The signer of unsubscribe links, when ``secret_env`` is set."""
    keys = app.settings.unsubscribe_keys
    return None if keys is None else Tokens(keys.reveal().split())


def unsubscribe_link(app: Workspace, *, message_id: str, enrollment_id: int, email: str
                     ) -> str | None:
    """This email's one-click link (``unsubscribe_url`` with its signed token), if set."""
    template = app.settings.unsubscribe_url
    tokens = unsubscribe_tokens(app)
    if template is None or tokens is None:
        return None
    return link(template, tokens.issue(message_id=message_id, enrollment_id=enrollment_id,
                                       email=email))


def list_unsubscribe(app: Workspace, seq: Sequence, address: str, web: str | None
                     ) -> tuple[str, ...]:
    """The List-Unsubscribe URIs for an email of ``seq`` (none when its policy says so):
    the link first (one-click), then ``mailto:`` the sender."""
    capacity = sum(box.daily_limit for box in app.settings.mailboxes.values())
    if not wants_headers(seq.list_unsubscribe, capacity):
        return ()
    return (web, mailto(address)) if web else (mailto(address),)


def sender_name(sender: str) -> str:
    """The `sender` template variable: the display name, or the address when there is none."""
    name, address = parseaddr(sender)
    return name or address


def _full_name(job: Job) -> str | None:
    name = " ".join(p for p in (job.vars.get("first_name", ""), job.vars.get("last_name", ""))
                    if p)
    return name or None


class _RecordFactory:
    def __init__(self, job: Job, step: str | None, mailbox: str) -> None:
        self.job, self.step, self.mailbox = job, step, mailbox

    def __call__(self, event: Event, at: datetime, detail: str | None, *,
                 message_id: str | None | bool = True) -> EventRecord:
        mid = self.job.message_id if message_id is True else message_id
        return EventRecord(event, at, email=self.job.email, mailbox=self.mailbox,
                           sequence=self.job.sequence, step=self.step,
                           message_id=mid if isinstance(mid, str) else None,
                           detail=detail, enrollment_id=self.job.enrollment_id)


def _record(job: Job, step: str | None, mailbox: str) -> _RecordFactory:
    return _RecordFactory(job, step, mailbox)


def _finish_failed(app: Workspace, job: Job, code: int | None, detail: str,
                   base: _RecordFactory | None = None, *, passed: bool = False) -> None:
    now = app.clock()
    rec = (base or _record(job, None, job.mailbox))(Event.FAILED, now, detail)
    if outcomes.record_final(app.store, job, now, send_status=SendStatus.FAILED,
                         state=EnrollmentState.FAILED, code=code, detail=detail,
                         records=[rec], passed_gate=passed):
        emit(rec)


def _pause_for_settings(app: Workspace, job: Job, step: str | None, reason: str, *,
                        passed: bool = False) -> None:
    """Our settings, not the prospect, stopped this step: pause with a flag, never fail."""
    now = app.clock()
    rec = _record(job, step, job.mailbox)(Event.PAUSED, now,
                                          f"{reason}; fix it, then `sequencer resume`")
    if outcomes.record_paused(app.store, job, now, flag=f"settings: {reason}", records=[rec],
                              passed_gate=passed):
        emit(rec)


def _finish_permanent(app: Workspace, job: Job, err: PermanentDeliveryError,
                      base: _RecordFactory, *, passed: bool) -> None:
    now = app.clock()
    if err.recipient_rejected:
        rec = base(Event.BOUNCED, now, f"hard bounce at RCPT: {err}")
        if outcomes.record_final(app.store, job, now, send_status=SendStatus.FAILED,
                             state=EnrollmentState.BOUNCED, code=err.code, detail=str(err),
                             records=[rec], suppress=f"hard bounce: {err}",
                             passed_gate=passed):
            emit(rec)
        return
    _finish_failed(app, job, err.code, f"permanent failure: {err}", base, passed=passed)


def _retry_or_fail(app: Workspace, job: Job, err: TransientDeliveryError,
                   base: _RecordFactory, *, passed: bool) -> None:
    now = app.clock()
    attempt = job.attempts + 1
    retry = app.settings.retry
    # No SMTP reply at all (the server is unreachable): that is the mailbox's outage, not
    # this prospect's problem, so it is retried at the capped backoff until the server is
    # back, never failed. A 4xx counts against the step's attempts.
    if attempt >= retry.attempts and err.code != 0:
        _finish_failed(app, job, err.code, f"gave up after {attempt} attempts: {err}", base,
                       passed=passed)
        return
    delay = backoff(attempt, timedelta(seconds=retry.backoff_s),
                    timedelta(seconds=retry.max_backoff_s))
    due = now + delay
    rec = base(Event.RETRYING, now, f"attempt {attempt} failed: {err}; next at "
               f"{due.strftime('%Y-%m-%d %H:%M:%S')}Z")
    if outcomes.record_retry(app.store, job, now, code=err.code, detail=str(err), next_due=due,
                         records=[rec], passed_gate=passed):
        emit(rec)


def _pause_mailbox(app: Workspace, job: Job, reason: str, base: _RecordFactory,
                   paused: set[str], *, auth: bool) -> None:
    paused.add(job.mailbox)
    claims.release(app.store, job, app.clock())
    pause_mailbox(app, job.mailbox, reason, auth=auth)


def pause_mailbox(app: Workspace, mailbox: str, reason: str, *, auth: bool = False) -> bool:
    """Pause ``mailbox`` in the database with one ``paused`` event, the first time only
    (every thread and process that sees the same failure calls this). ``auth``: its
    credentials or OAuth2 grant were refused (``status --mailboxes``: auth needed)."""
    record = EventRecord(Event.PAUSED, app.clock(), mailbox=mailbox,
                         detail=f"mailbox paused until restart: {reason}")
    if outcomes.pause_mailbox(app.store, mailbox, reason, record,
                              kind="auth" if auth else None):
        emit(record)
        return True
    return False
