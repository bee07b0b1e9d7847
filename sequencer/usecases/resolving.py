"""Resolving ``unknown`` steps by looking for them in the Sent folder (issue 9, item 3).

A step is ``unknown`` when DATA went out and no reply was recorded (a crash after DATA, a
reply that never came). The watcher of its mailbox looks for its Message-ID in Sent
(``UID SEARCH HEADER Message-ID``) every ``sent_grace / 10`` (1 s to 60 s) while it has
such steps. Found: the step was sent, it counts as ``sent`` and the enrollment goes on
(its next step is due as if sent then). Still not there once ``sent_grace`` has passed
since DATA: it stays flagged, the flag says so, and nobody looks again (a person decides
with `resume` or `stop`). It is found in Sent when the server files submitted mail there by
itself (Gmail, Microsoft 365) or when our own copy went in; our copy is made only after
the server's 250 was recorded, so it never makes a step look sent that was not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from sequencer.core import machine, schedule
from sequencer.core.machine import EnrollmentState, Event
from sequencer.core.schedule import Recipient
from sequencer.eventlog import EventRecord, emit
from sequencer.mail.imap import sent
from sequencer.mail.imap.connection import Connection
from sequencer.store import resolution
from sequencer.usecases.copying import imap_account
from sequencer.workspace import Workspace

logger = logging.getLogger(__name__)


def interval_s(grace_s: float) -> float:
    """How often a mailbox's unknown steps are looked for."""
    return min(60.0, max(1.0, grace_s / 10))


async def resolve_unknown(app: Workspace, mailbox: str) -> int:
    """Look for ``mailbox``'s unknown steps in its Sent folder; returns how many were
    decided (found, or given up on)."""
    box = app.settings.mailboxes.get(mailbox)
    if box is None or box.imap is None:
        return 0
    steps = resolution.unknown_steps(app.store, mailbox)
    if not steps:
        return 0
    connection = Connection(imap_account(app, box), app.settings.imap_timeout_s, None,
                            asyncio.Event())
    try:
        await connection.open()
        folder = await sent.find_sent(connection, box.imap.sent_folder)
        found = await sent.holds(connection, folder, [s.message_id for s in steps])
    finally:
        with contextlib.suppress(Exception):
            await connection.close(polite=True)
    now = app.clock()
    grace = timedelta(seconds=box.sent_grace_s)
    decided = 0
    for step in steps:
        if step.message_id in found:
            decided += _found(app, mailbox, step)
        elif now - step.data_at >= grace:
            flag = (f"step {step.step_name}: outcome unknown, not in {folder} within "
                    f"{_span(grace)} of DATA")
            rec = EventRecord(Event.UNKNOWN, now, email=step.email, mailbox=mailbox,
                              sequence=step.sequence, step=step.step_name,
                              message_id=step.message_id, enrollment_id=step.enrollment_id,
                              detail=f"not found in {folder} within {_span(grace)}; left "
                                     "flagged: check by hand, then resume or stop")
            if resolution.not_in_sent(app.store, step, now, flag, rec):
                emit(rec)
                decided += 1
    return decided


def _found(app: Workspace, mailbox: str, step: resolution.UnknownStep) -> int:
    at = app.clock()
    seq = app.sequences.get(step.sequence)
    total = len(seq.steps) if seq is not None else step.step_index + 1
    state, next_index = machine.after_sent(step.step_index, total)
    due = None
    if seq is not None and state is EnrollmentState.ACTIVE:
        who = Recipient(step.email, step.timezone, step.vars, step.not_before)
        when = schedule.due(seq, who, next_index, step.data_at)
        due = None if when is None else max(when.at, at)
        if due is None:
            state = EnrollmentState.COMPLETED
    detail = "found in the Sent folder by its Message-ID (its outcome was unknown)"
    records = [EventRecord(Event.SENT, at, email=step.email, mailbox=mailbox,
                           sequence=step.sequence, step=step.step_name,
                           message_id=step.message_id, enrollment_id=step.enrollment_id,
                           detail=detail)]
    if state is EnrollmentState.COMPLETED:
        records.append(EventRecord(Event.COMPLETED, at, email=step.email, mailbox=mailbox,
                                   sequence=step.sequence, step=step.step_name,
                                   enrollment_id=step.enrollment_id))
    if not resolution.found_in_sent(app.store, step, at, state=state, next_index=next_index,
                                    next_due=due, records=records):
        return 0
    for rec in records:
        emit(rec)
    return 1


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


async def keep_resolving(app: Workspace, mailbox: str, done: asyncio.Event) -> None:
    """Run ``resolve_unknown`` for ``mailbox`` every ``interval_s`` until ``done``."""
    box = app.settings.mailboxes.get(mailbox)
    if box is None or box.imap is None:
        return
    every = interval_s(box.sent_grace_s)
    while not done.is_set():
        try:
            await resolve_unknown(app, mailbox)
        except Exception as err:  # the IMAP server or the database: try again later
            logger.warning("mailbox %s: looking for unknown steps in Sent failed: %s: %s",
                           mailbox, type(err).__name__, err)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), every)
