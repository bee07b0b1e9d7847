"""Drive the engine in-process with an injected clock: claim, deliver, inspect."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sequencer.config import load_settings
from sequencer.store.claims import Job
from sequencer.store.hotpath import HotPath
from sequencer.usecases.sending import Senders, commit_outcomes, deliver
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
    """One scheduler and one sender, stepped by hand (outcomes committed after each
    ``deliver``)."""

    def __init__(self, wd: Workdir, clock: Clock | None = None) -> None:
        self.wd = wd
        self.clock = clock or Clock()
        self.app = Workspace.from_settings(load_settings(wd.config, env=wd.env), clock=self.clock)
        self.claims: list[Job] = []
        self.scheduler = Scheduler(self.app, self.claims.append, probe=500)
        self.runner = asyncio.Runner()
        self.senders = Senders(self.app)
        self.path = HotPath(self.app.store)

    def claim(self) -> list[Job]:
        self.scheduler.tick()
        claims, self.claims[:] = list(self.claims), []
        return claims

    def deliver(self, claims: list[Job]) -> None:
        for claim in claims:
            self.runner.run(deliver(self.app, claim, self.senders, self.path))
        commit_outcomes(self.app, self.path)

    def step(self) -> int:
        """Claim what is due now and deliver it; returns how many claims there were."""
        claims = self.claim()
        self.deliver(claims)
        return len(claims)

    def close(self) -> None:
        self.runner.run(self.senders.close())
        self.runner.close()
        self.path.close()
        self.app.close()
