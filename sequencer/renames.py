"""A sequence whose ``name:`` changed, or whose file went away, under live enrollments.

Enrollments keep their sequence by name. When no file under ``sequences/`` defines a name
that active or paused enrollments still have, those enrollments have nothing to send: the
worker would pause each one at its next step. Instead every command that sends or enrolls
refuses to start, and names the file (the one that now defines a name no enrollment has
ever used, most like the old one) and the line of its ``name:``. Nothing stored changes:
put the old name back and the enrollments go on where they were.

Which new file is the old one, without storing file paths: a file whose name no enrollment
has used is a candidate; it is more likely the renamed one when it defines steps that the
old name's enrollments were sent, or when its file is still called after the old name. With
one old name and one candidate left that share nothing, the error names that file but
says it may be a new sequence.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from sequencer.core.spec import Sequence
from sequencer.core.yamlfile import read_yaml
from sequencer.errors import SpecError
from sequencer.store import names
from sequencer.store.db import Store


@dataclass(frozen=True)
class Gone:
    """A name that live enrollments have and no file defines."""

    name: str
    states: dict[str, int]  # active / paused -> how many
    sent: frozenset[str]  # the step names its enrollments were sent

    @property
    def count(self) -> int:
        return sum(self.states.values())


def find(sequences: Iterable[Sequence], store: Store, sequences_dir: Path, *,
         also_defined: Collection[str] = ()) -> list[SpecError]:
    """One error per name that live enrollments have and no sequence in ``sequences``
    (nor ``also_defined``: names of files that did not load) defines."""
    loaded = list(sequences)
    defined = {seq.name for seq in loaded} | set(also_defined)
    used = names.used(store)
    missing = used - defined
    if not missing:
        return []
    live = names.live(store, missing)
    if not live:
        return []  # only finished enrollments: a sequence retired on purpose
    sent = names.sent_steps(store, live)
    gone = [Gone(name, live[name], sent.get(name, frozenset())) for name in sorted(live)]
    fresh = [seq for seq in loaded if seq.name not in used]
    return [_error(old, new, sure, sequences_dir) for old, new, sure in pair(gone, fresh)]


def pair(gone: list[Gone], fresh: list[Sequence]
         ) -> list[tuple[Gone, Sequence | None, bool]]:
    """Each gone name with the new sequence most like it, or None, and whether they share
    something: step names its enrollments were sent, or a file still named after the old
    name. A last lone pair that shares nothing goes together, unsure."""
    def score(old: Gone, new: Sequence) -> tuple[int, int]:
        steps = {step.name for step in new.steps}
        return len(old.sent & steps), int(new.path.stem == old.name)

    ranked = sorted(((score(old, new), -i, -j) for i, old in enumerate(gone)
                     for j, new in enumerate(fresh)), reverse=True)
    found: dict[int, int] = {}
    for points, i, j in ranked:
        if points > (0, 0) and -i not in found and -j not in found.values():
            found[-i] = -j
    left = [i for i in range(len(gone)) if i not in found]
    free = [j for j in range(len(fresh)) if j not in found.values()]
    lone = len(left) == 1 and len(free) == 1
    if lone:
        found[left[0]] = free[0]
    return [(old, fresh[found[i]] if i in found else None, not (lone and i == left[0]))
            for i, old in enumerate(gone)]


def _error(old: Gone, new: Sequence | None, sure: bool, sequences_dir: Path) -> SpecError:
    paused = old.states.get(names.LIVE[1], 0)
    many = old.count != 1
    while_live = (f"while {old.count} enrollment{'s' if many else ''} "
                  f"{'are' if many else 'is'} {'active or paused' if paused else 'active'}")
    if paused:
        while_live += f" ({old.count - paused} active, {paused} paused)"
    they, go, them = ("they", "go", "them") if many else ("it", "goes", "it")
    ending = (f"end {them} first (`sequencer status --sequence {old.name}` lists them; "
              f"`sequencer stop EMAIL --sequence {old.name}` ends one)")
    on = f"{they} {go} on where {they} left off"
    if new is None:
        return SpecError(f"no file defines sequence {old.name!r} any more (removed, or its "
                         f"name: changed) {while_live}: put the file back and {on}, or "
                         f"{ending}", sequences_dir)
    if sure:
        return SpecError(f"sequence name changed from {old.name!r} to {new.name!r} "
                         f"{while_live}: put `name: {old.name}` back and {on}, or {ending}",
                         new.path, _name_line(new.path))
    return SpecError(f"no file defines sequence {old.name!r} any more {while_live}, and "
                     f"{new.name!r} here is new: if it is {old.name!r} renamed, put `name: "
                     f"{old.name}` back and {on}; if not, put {old.name!r}'s file back, or "
                     f"{ending}", new.path, _name_line(new.path))


def _name_line(path: Path) -> int | None:
    try:
        return read_yaml(path, SpecError).line_of(("name",))
    except SpecError:
        return None
