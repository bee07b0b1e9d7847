"""Use cases around enrollments: import a CSV, preview, manual control."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sequencer.core import schedule
from sequencer.core.addresses import AddressError, address_key
from sequencer.core.schedule import Recipient
from sequencer.core.spec import Sequence, load_sequence, resolve_sequence
from sequencer.errors import EnrollError, SpecError
from sequencer.eventlog import EventRecord
from sequencer.prospects import Prospect, Rejected, count_rows, read_prospects
from sequencer.store import control as store_control
from sequencer.store.enrollments import Enrolled, Rules, enroll
from sequencer.templating.templates import BUILTIN_VARIABLES
from sequencer.usecases.checking import check_sequence
from sequencer.workspace import Workspace


@dataclass
class Summary:
    sequence: str
    rows: int = 0
    enrolled: int = 0
    moved: int = 0  # enrolled here after `--move` stopped their current sequence
    rejected: list[Rejected] = field(default_factory=list)
    warnings: list[Enrolled] = field(default_factory=list)  # enrolled, with a warning


def load_checked_sequence(app: Workspace, ref: str) -> Sequence:
    seq = load_sequence(resolve_sequence(ref, app.settings.sequences_dir))
    problems = check_sequence(seq, app.settings, app.templates)
    if problems:
        raise SpecError("; ".join(problems))
    return seq


def required_variables(app: Workspace, seq: Sequence) -> set[str]:
    needed: set[str] = set()
    for step in seq.steps:
        needed |= set(app.templates.get(step.template).required)
    return needed - BUILTIN_VARIABLES


def first_due(seq: Sequence, now: datetime) -> Callable[[Prospect], datetime]:
    def due(p: Prospect) -> datetime:
        first = schedule.due(seq, Recipient(p.email, p.timezone, p.fields), 0, now)
        return now if first is None else first.at
    return due


def row_check(seq: Sequence) -> Callable[[Prospect], str | None]:
    """A row whose `ahead_of` date or `country` the schedule cannot read is rejected."""
    def check(p: Prospect) -> str | None:
        return schedule.row_problem(seq, p.fields)
    return check


def run_enroll(app: Workspace, ref: str, csv: Path, *, progress: bool = True,
               move: bool = False) -> Summary:
    """Import ``csv`` into the sequence, all or nothing: file-level problems (the header, the
    encoding, a record the csv module cannot read) raise and leave nothing stored; rows with
    a bad address, a duplicate, a suppressed or already enrolled address, or one active in
    another sequence (``max_active_sequences``), are rejected one by one and the rest
    enrolled, in one transaction. ``move``: a prospect active elsewhere is moved here (their
    other sequences end as ``stopped``, reason moved) in that same transaction."""
    seq = load_checked_sequence(app, ref)
    required = required_variables(app, seq)
    rows = read_prospects(csv, required=required, check=row_check(seq))
    first = next(rows, None)  # file-level errors are raised here, before any write
    summary = Summary(seq.name)
    if first is None:
        return summary

    def chain() -> Iterator[Prospect | Rejected]:
        yield first
        yield from rows

    now = app.clock()
    rules = Rules(max_active=app.settings.max_active_sequences, move=move)
    results = enroll(app.store, seq, chain(), now, first_due(seq, now), seq.timezone,
                     mailboxes=app.settings.mailboxes_of(seq.mailboxes), rules=rules)
    bar = _progress(csv) if progress and sys.stderr.isatty() else None
    try:
        for result in results:  # one transaction: an error anywhere stores nothing
            summary.rows += 1
            if isinstance(result, Enrolled):
                summary.enrolled += 1
                summary.moved += bool(result.moved_from)
                if result.warning is not None:
                    summary.warnings.append(result)
            else:
                summary.rejected.append(result)
            if bar is not None:
                bar[0].advance(bar[1])
    finally:
        results.close()
        if bar is not None:
            bar[0].stop()
    return summary


def _progress(csv: Path):  # type: ignore[no-untyped-def]
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    progress = Progress(TextColumn("enrolling"), BarColumn(), MofNCompleteColumn(),
                        transient=True)
    task = progress.add_task("enroll", total=count_rows(csv))
    progress.start()
    return progress, task


def render_preview(app: Workspace, ref: str, email: str) -> str:
    from sqlalchemy import select

    from sequencer.store.schema import enrollments
    from sequencer.usecases.sending import template_context

    seq = load_checked_sequence(app, ref)
    with app.store.read() as conn:
        row = conn.execute(select(enrollments.c.email, enrollments.c.vars,
                                  enrollments.c.mailbox).where(
            enrollments.c.email_key == key_of(email),
            enrollments.c.sequence == seq.name)).first()
    if row is None:
        raise EnrollError(f"{email} is not enrolled in {seq.name}")
    address = row.email  # the enrollment's own spelling
    mailbox = app.mailbox(row.mailbox)  # the one this prospect was given at enrollment
    out: list[str] = []
    for step in seq.steps:
        rendered = app.templates.get(step.template).render(template_context(
            app, email=address, variables=row.vars or {}, mailbox=row.mailbox,
            sequence=seq.name, step=step.name, unsubscribe_url=None))
        out.append(f"--- step {step.name} (wait {_wait_text(step)}"
                   f"{', threaded' if step.thread else ''}) ---")
        out.append(f"From: {mailbox.sender}\nTo: {address}\nSubject: {rendered.subject}\n")
        out.append(rendered.text.rstrip() + "\n")
    return "\n".join(out)


def key_of(email: str) -> str:
    """The identity of an address typed on the command line (any spelling)."""
    try:
        return address_key(email)
    except AddressError as err:
        raise EnrollError(str(err)) from None


def _wait_text(step: object) -> str:
    wait = step.wait  # type: ignore[attr-defined]
    if wait.business_days:
        return f"{wait.business_days} business days"
    return str(wait.delta)


def control(app: Workspace, action: str, email: str,
            sequence: str | None) -> tuple[list[EventRecord], list[str]]:
    from sequencer.eventlog import emit

    def due_after(row: store_control.Resumed, index: int, now: datetime) -> datetime | None:
        seq = app.sequences.get(row.sequence)
        if seq is None:
            return now
        who = Recipient(row.email, row.timezone, row.vars or {}, row.not_before)
        due = schedule.due(seq, who, index, now)
        return None if due is None else due.at

    key_of(email)  # not an address: a clear error before anything else
    records, refusals = store_control.apply(
        app.store, action, email.strip(), app.clock(), sequence=sequence, due_after=due_after)
    for rec in records:
        emit(rec)
    return records, refusals
