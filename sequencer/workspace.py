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

from sequencer.config import MailboxConfig, Settings, load_settings
from sequencer.core.spec import Sequence, load_sequences
from sequencer.errors import SpecError
from sequencer.oauth.sources import TokenSources
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

    def __post_init__(self) -> None:
        if self.tokens is None:
            object.__setattr__(self, "tokens", TokenSources(self.settings, self.store))

    @classmethod
    def load(cls, config: Path | None = None, *, clock: Clock = utcnow,
             create: bool = True) -> Workspace:
        settings = load_settings(config)
        return cls.from_settings(settings, clock=clock, create=create)

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock = utcnow,
                      create: bool = True) -> Workspace:
        store = Store(settings.database)
        if create:
            store.create()
        sequences = {}
        if settings.sequences_dir.is_dir():
            sequences = {s.name: s for s in load_sequences(settings.sequences_dir)}
        if clock is utcnow and settings.test_clock is not None:
            clock = settings.test_clock  # $SEQUENCER_TEST_CLOCK: tests of the real processes
        return cls(settings, store, MappingProxyType(sequences),
                   TemplateSet(settings.templates_dir), clock)

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
