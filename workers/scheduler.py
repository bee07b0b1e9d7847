"""The scheduler loop: claims due steps from the database and tells the broker "now".

Several schedulers may run (claims are conditional updates, ``SKIP LOCKED`` on
PostgreSQL). A lost broker message costs nothing but time: its claim's lease runs out and
the step is claimed again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from sequencer.core.compose import new_message_id
from sequencer.eventlog import emit
from sequencer.store.claims import Job, claim_due
from sequencer.usecases import planning, sending
from sequencer.workspace import Workspace

logger = logging.getLogger(__name__)


class Scheduler:
    """Claims due steps in batches, as many as the senders drain within a lease.

    ``backlog()`` is what was dispatched and not finished yet (the in-process sender's
    queue, or the Redis queue's depth). The scheduler refills at the low-water mark only,
    and never lets the backlog grow past what the senders were seen to drain in half a
    lease: a claim that would wait in the queue past its lease would come back as a second
    claim of the same step (harmless, the gate refuses the stale one, but wasted work).
    Until it has seen the senders drain anything it dispatches ``probe`` at most.
    """

    def __init__(self, app: Workspace, enqueue: Callable[[Job], None], *, batch: int = 500,
                 backlog: Callable[[], int] | None = None, probe: int = 64) -> None:
        self.app = app
        self.enqueue = enqueue
        self.batch = batch
        self.probe = min(probe, batch)
        self.backlog = backlog or (lambda: 0)
        self.wake = threading.Event()
        self.rate = 0.0  # jobs per second the senders finished, smoothed
        self._last: tuple[float, int] | None = None  # (monotonic time, backlog after tick)
        self._allowed = self.probe

    def allowance(self, backlog: int) -> int:
        """How large the backlog may be now."""
        now = time.monotonic()
        if self._last is not None:
            then, before = self._last
            if now > then and before > 0:
                rate = max(0, before - backlog) / (now - then)
                self.rate = rate if self.rate == 0 else 0.7 * self.rate + 0.3 * rate
        if self.rate <= 0:
            return self.probe
        lease_s = self.app.settings.claim_lease_s
        return max(self.probe, min(self.batch, int(self.rate * lease_s / 2)))

    def tick(self) -> int:
        """Claim what is due now and dispatch it; returns how many were dispatched."""
        backlog = self.backlog()
        allowed = self._allowed = self.allowance(backlog)
        if backlog > allowed // 2:
            # Refill at the low-water mark only: each claim transaction holds the write lock
            # (and the GIL) while the senders wait to commit, so claim in large batches rather
            # than a handful of steps after every send.
            self._last = (time.monotonic(), backlog)
            return 0
        room = allowed - backlog
        settings = self.app.settings
        now = self.app.clock()
        jobs, records = claim_due(
            self.app.store, now, limit=room,
            lease=timedelta(seconds=settings.claim_lease_s),
            step_name=self.app.step_name,
            new_message_id=lambda mailbox: new_message_id(
                self.app.mailbox(mailbox).sender_domain),
            limits=sending.mailbox_limits(self.app),
            mailboxes_known=settings.mailboxes.keys(),
            hold=planning.claim_hold(self.app, now),
            lookback=planning.lookback(self.app),
        )
        for rec in records:
            emit(rec)
        for job in jobs:
            self.enqueue(job)
        self._last = (time.monotonic(), backlog + len(jobs))
        return len(jobs)

    def run(self, stop: threading.Event) -> None:
        interval = self.app.settings.tick_s
        while not stop.is_set():
            try:
                dispatched = self.tick()
            except Exception:
                logger.exception("scheduler tick failed; trying again")
                dispatched = 0
            if dispatched and self.backlog() <= self._allowed // 2:
                continue
            self.wake.wait(interval)
            self.wake.clear()
