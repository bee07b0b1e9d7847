"""The loaded working folder: settings, store, sequences and templates, read once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sequencer.config import MailboxConfig, Settings, load_settings
from sequencer.core.spec import Sequence, load_sequences
from sequencer.errors import SpecError
from sequencer.store.db import Store, utcnow
from sequencer.templating.templates import TemplateSet

Clock = Callable[[], datetime]


@dataclass
class App:
    settings: Settings
    store: Store
    sequences: dict[str, Sequence]
    templates: TemplateSet
    clock: Clock = field(default=utcnow)
    crash_at: str | None = None  # tests only: where delivery kills its own process
    paused_mailboxes: set[str] = field(default_factory=set)  # this process saw them fail

    @classmethod
    def load(cls, config: Path | None = None, *, clock: Clock = utcnow,
             create: bool = True) -> App:
        settings = load_settings(config)
        return cls.from_settings(settings, clock=clock, create=create)

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock = utcnow,
                      create: bool = True) -> App:
        store = Store(settings.database)
        if create:
            store.create()
        sequences = {}
        if settings.sequences_dir.is_dir():
            sequences = {s.name: s for s in load_sequences(settings.sequences_dir)}
        return cls(settings, store, sequences, TemplateSet(settings.templates_dir), clock,
                   crash_at=settings.test_crash_at)

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
