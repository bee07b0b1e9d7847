"""`sequencer validate`: a sequence, its mailbox and every template it uses."""

from __future__ import annotations

from collections.abc import Sequence as Seq
from pathlib import Path

from sqlalchemy import make_url

from sequencer import renames
from sequencer.config import Settings, load_settings
from sequencer.core.lint import Body, Finding, lint
from sequencer.core.spec import (
    Sequence,
    load_sequence,
    load_sequences,
    load_sequences_skipping,
    resolve_sequence,
)
from sequencer.errors import SequencerError, SpecError, StoreError
from sequencer.store.db import Store
from sequencer.templating.templates import TemplateSet


def check_sequence(seq: Sequence, settings: Settings, templates: TemplateSet) -> list[str]:
    """Every problem with ``seq`` against the settings and templates, as ``file:line: reason``."""
    problems: list[str] = []
    for name in settings.mailboxes_of(seq.mailboxes):
        if name not in settings.mailboxes:
            known = ", ".join(sorted([*settings.mailboxes, *settings.pools])) \
                or "none configured"
            problems.append(str(SpecError(
                f"mailbox {name!r} is not in the settings ({known})", seq.path,
                _line_of(seq.path, "mailbox:"))))
    for step in seq.steps:
        try:
            templates.check(step.template)
        except SequencerError as err:
            problems.append(f"{err} (step {step.name} of {seq.path}:{step.line})")
    return problems


def lint_sequence(seq: Sequence, templates: TemplateSet) -> list[Finding]:
    """The "new information" warnings for ``seq``'s follow-ups (``core.lint``)."""
    bodies: list[Body] = []
    for step in seq.steps:
        template = templates.get(step.template)
        bodies.append(Body(seq.name, step.name, template.path, template.text_line,
                           template.text_source))
    return lint(bodies)


def validate_sequences(config: Path | None, refs: Seq[str], *, strict: bool = False
                       ) -> tuple[list[str], list[str], list[str]]:
    """(errors, warnings, lines for the sequences that passed); ``strict`` makes every
    warning an error."""
    try:
        settings = load_settings(config, required=True)
    except SequencerError as err:
        return [str(err)], [], []
    templates = TemplateSet(settings.templates_dir)
    errors: list[str] = []
    warnings: list[str] = []
    checked: list[str] = []
    sequences: list[Sequence] = []
    try:
        if refs:
            for ref in refs:
                sequences.append(load_sequence(resolve_sequence(ref, settings.sequences_dir)))
        else:
            sequences = load_sequences(settings.sequences_dir)
            if not sequences:
                errors.append(f"{settings.sequences_dir}: no sequences found")
    except SequencerError as err:
        errors.append(str(err))
    renamed = _renamed(settings) if sequences and not errors else {}
    if not refs:
        errors.extend(renamed.pop(None, []))  # a name whose file is gone
    for seq in sequences:
        problems = renamed.get(seq.path.resolve(), []) + check_sequence(seq, settings,
                                                                        templates)
        findings = [] if problems else lint_sequence(seq, templates)
        if strict:
            problems += [f"{f.path}:{f.line}: {f.message} (--strict)" for f in findings]
        else:
            warnings.extend(str(f) for f in findings)
        errors.extend(problems)
        if not problems:
            boxes = settings.mailboxes_of(seq.mailboxes)
            which = (f"mailbox {boxes[0]}" if len(boxes) == 1
                     else f"mailboxes {', '.join(boxes)} ({seq.assign})")
            checked.append(f"ok: {seq.name} ({seq.path}): {len(seq.steps)} steps, {which}")
    return errors, warnings, checked


def _renamed(settings: Settings) -> dict[Path | None, list[str]]:
    """``sequencer.renames`` against the database, when there is one to read (validate
    never creates one), by the file each is about (None: a name no file defines)."""
    if not _has_database(settings.database):
        return {}
    store = Store(settings.database)
    try:
        loaded, _ = load_sequences_skipping(settings.sequences_dir)
        problems = renames.find(loaded, store, settings.sequences_dir)
    except StoreError:
        return {}  # not reachable from here, or not a sequencer database (yet)
    finally:
        store.dispose()
    found: dict[Path | None, list[str]] = {}
    for problem in problems:
        where = Path(problem.path).resolve() if problem.line is not None and problem.path \
            else None
        found.setdefault(where, []).append(str(problem))
    return found


def _has_database(url: str) -> bool:
    if not url.startswith("sqlite"):
        return True
    database = make_url(url).database
    return database not in (None, "", ":memory:") and Path(str(database)).is_file()


def _line_of(path: Path, needle: str) -> int | None:
    try:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.lstrip().startswith(needle):
                return number
    except OSError:
        return None
    return None
