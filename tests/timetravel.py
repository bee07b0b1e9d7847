"""Drive the real `sequencer run` process through simulated weeks with a stepped clock.

The processes read the time from a file (``SEQUENCER_TEST_CLOCK=file:PATH``). The driver
moves it straight to the earliest due step, waits until the worker has dealt with
everything due then (sent, or held back to a later time) and no claim is open, and moves on.
The clock stands still while the worker works, so each delivery the SMTP ledger records
happened at a known simulated instant: the one the clock read while it arrived.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select

from sequencer.store.db import Store
from sequencer.store.schema import enrollments
from tests.workdir import Workdir


@dataclass
class SteppedClock:
    path: Path
    now: datetime

    def __post_init__(self) -> None:
        self.set(self.now)

    @property
    def env(self) -> dict[str, str]:
        return {"SEQUENCER_TEST_CLOCK": f"file:{self.path}"}

    def set(self, moment: datetime) -> None:
        self.now = moment
        part = self.path.with_suffix(".part")
        part.write_text(moment.isoformat(), encoding="utf-8")
        os.replace(part, self.path)  # atomic: a reader sees the old or the new instant


@dataclass
class Arrival:
    at: datetime  # the simulated instant the clock read while it arrived
    rcpt: str
    subject: str


@dataclass
class Driver:
    wd: Workdir
    clock: SteppedClock
    smtp: object  # tests.fixtures.smtp.SmtpServer
    arrivals: list[Arrival] = field(default_factory=list)
    instants: list[datetime] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.store = Store(f"sqlite:///{self.wd.path / 'sequencer.db'}")

    def close(self) -> None:
        self.store.dispose()

    def _state(self) -> tuple[datetime | None, int, int]:
        with self.store.read() as conn:
            due = conn.scalar(select(func.min(enrollments.c.next_due))
                              .where(enrollments.c.state == "active"))
            open_claims = conn.scalar(select(func.count()).select_from(enrollments)
                                      .where(enrollments.c.claim_token.is_not(None))) or 0
            active = conn.scalar(select(func.count()).select_from(enrollments)
                                 .where(enrollments.c.state == "active")) or 0
        return due, open_claims, active

    def _collect(self) -> None:
        seen = len(self.arrivals)
        for d in self.smtp.deliveries[seen:]:  # type: ignore[attr-defined]
            self.arrivals.append(Arrival(self.clock.now, d.rcpt_tos[0], d.message["Subject"]))

    def settle(self, timeout: float = 20) -> None:
        """Wait until nothing is due at the current instant and no claim is open."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            due, open_claims, _ = self._state()
            if open_claims == 0 and (due is None or due > self.clock.now):
                self._collect()
                return
            time.sleep(0.02)
        raise AssertionError(f"the worker did not settle at {self.clock.now}\n{self.wd.log()}")

    def run(self, until: datetime, max_steps: int = 200) -> None:
        """Step from due time to due time until nothing is active or ``until`` is passed."""
        self.settle()
        for _ in range(max_steps):
            due, _, active = self._state()
            if not active or due is None or due > until:
                return
            self.clock.set(max(due, self.clock.now))
            self.instants.append(self.clock.now)
            self.settle()
        raise AssertionError("too many steps")
