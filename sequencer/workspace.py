"""The loaded working folder: settings, store, sequences and templates, read once.

A ``Workspace`` is a value: nothing changes it after loading. State that changes while a
process runs lives with its owner (the mailboxes a send thread saw fail are on
``usecases.sending.Senders``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType

from sequencer import renames
from sequencer.config import MailboxConfig, Settings, load_settings
from sequencer.core.spec import Sequence, load_sequences_skipping, sequence_name
from sequencer.errors import SpecError
from sequencer.oauth.sources import TokenSources
from sequencer.store import webhooks
from sequencer.store.db import Store, utcnow
from sequencer.templating.templates import TemplateSet

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Workspace:
    settings: Settings
    store: Store
    sequences: Mapping[str, Sequence]
    templates: TemplateSet
    clock: Clock = field(default=utcnow)
    #: Access tokens of the ``auth: oauth2`` mailboxes, shared by this process's threads.
    tokens: TokenSources = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    skipped: tuple[SpecError, ...] = ()  # sequence files that did not load (skip_broken)

    def __post_init__(self) -> None:
        if self.tokens is None:
            object.__setattr__(self, "tokens", TokenSources(self.settings, self.store))

    @classmethod
    def load(cls, config: Path | None = None, *, clock: Clock = utcnow,
             create: bool = True, skip_broken: bool = False) -> Workspace:
        """The working folder of the settings file (one must exist). A broken sequence file
        is an error, or with ``skip_broken`` left out and listed in ``skipped`` (for the
        commands that only read or stop enrollments). Without ``skip_broken``, a sequence
        renamed or removed under live enrollments is an error too (``renamed``)."""
        settings = load_settings(config, required=True)
        return cls.from_settings(settings, clock=clock, create=create,
                                 skip_broken=skip_broken)

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock = utcnow,
                      create: bool = True, skip_broken: bool = False) -> Workspace:
        loaded: list[Sequence] = []
        skipped: list[SpecError] = []
        if settings.sequences_dir.is_dir():
            loaded, skipped = load_sequences_skipping(settings.sequences_dir)
            if skipped and not skip_broken:
                raise skipped[0]
        store = Store(settings.database)
        if create:
            try:
                store.create()
                if not skip_broken:
                    renamed = renames.find(loaded, store, settings.sequences_dir)
                    if renamed:
                        raise renamed[0]
                webhooks.subscribe(store, [(hook.url, event) for hook in settings.webhooks
                                           for event in hook.events])
            except BaseException:
                store.dispose()
                raise
        if clock is utcnow and settings.test_clock is not None:
            clock = settings.test_clock  # $SEQUENCER_TEST_CLOCK: tests of the real processes
        return cls(settings, store, MappingProxyType({s.name: s for s in loaded}),
                   TemplateSet(settings.templates_dir), clock, skipped=tuple(skipped))

    def renamed(self) -> list[SpecError]:
        """Each name that active or paused enrollments have and no sequence file defines
        (``sequencer.renames``); a file that did not load counts by its ``name:``."""
        broken = [sequence_name(Path(err.path)) for err in self.skipped if err.path]
        return renames.find(self.sequences.values(), self.store, self.settings.sequences_dir,
                            also_defined=[name for name in broken if name])

    def mailbox(self, name: str) -> MailboxConfig:
        return self.settings.mailboxes[name]

    def sequence(self, name: str) -> Sequence:
        try:
            return self.sequences[name]
        except KeyError:
            raise SpecError(f"no sequence named {name!r} under {self.settings.sequences_dir}",
                            self.settings.sequences_dir) from None

    def step_name(self, sequence: str, index: int) -> str | None:
        seq = self.sequences.get(sequence)
        if seq is None or index >= len(seq.steps):
            return None
        return seq.steps[index].name

    def close(self) -> None:
        self.store.dispose()
