"""`sequencer validate`: a sequence, its mailbox and every template it uses."""

from __future__ import annotations

from collections.abc import Sequence as Seq
from pathlib import Path

from sequencer.config import Settings, load_settings
from sequencer.core.lint import Body, Finding, lint
from sequencer.core.spec import Sequence, load_sequence, load_sequences, resolve_sequence
from sequencer.errors import SequencerError, SpecError
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
    for seq in sequences:
        problems = check_sequence(seq, settings, templates)
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


def _line_of(path: Path, needle: str) -> int | None:
    try:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.lstrip().startswith(needle):
                return number
    except OSError:
        return None
    return None
