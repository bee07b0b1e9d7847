"""Drive the engine in-process with an injected clock: claim, deliver, inspect."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sequencer.config import load_settings
from sequencer.store.claims import Claim
from sequencer.usecases.sending import Senders, deliver
from sequencer.workspace import Workspace
from tests.workdir import Workdir
from workers.scheduler import Scheduler


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2026, 11, 23, 15, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


class Engine:
    """One scheduler and one sender loop, stepped by hand."""

    def __init__(self, wd: Workdir, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.app = Workspace.from_settings(load_settings(wd.config, env=wd.env), clock=self.clock)
        self.claims: list[Claim] = []
        self.scheduler = Scheduler(self.app, self.claims.append)
        self.runner = asyncio.Runner()
        self.senders = Senders(self.app)

    def claim(self) -> list[Claim]:
        self.scheduler.tick()
        claims, self.claims[:] = list(self.claims), []
        return claims

    def deliver(self, claims: list[Claim]) -> None:
        for claim in claims:
            self.runner.run(deliver(self.app, claim, self.senders))

    def step(self) -> int:
        """Claim what is due now and deliver it; returns how many claims there were."""
        claims = self.claim()
        self.deliver(claims)
        return len(claims)

    def close(self) -> None:
        self.runner.run(self.senders.close())
        self.runner.close()
        self.app.close()
