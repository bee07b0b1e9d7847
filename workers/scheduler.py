"""The scheduler loop: claims due steps from the database and tells the broker "now".

Several schedulers may run (claims are conditional updates, ``SKIP LOCKED`` on
PostgreSQL). A lost broker message costs nothing but time: its claim's lease runs out and
the step is claimed again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from sequencer.core.compose import new_message_id
from sequencer.eventlog import emit
from sequencer.store.claims import Claim, claim_due
from sequencer.usecases import planning, sending
from sequencer.workspace import Workspace

logger = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, app: Workspace, enqueue: Callable[[Claim], None], *, batch: int = 500,
                 backlog: Callable[[], int] | None = None) -> None:
        self.app = app
        self.enqueue = enqueue
        self.batch = batch
        self.backlog = backlog or (lambda: 0)
        self.wake = threading.Event()

    def tick(self) -> int:
        """Claim what is due now and dispatch it; returns how many were dispatched."""
        backlog = self.backlog()
        if backlog > self.batch // 2:
            # Refill at the low-water mark only: each claim transaction holds the write lock
            # (and the GIL) while the senders wait to commit, so claim in large batches rather
            # than a handful of steps after every send.
            return 0
        room = self.batch - backlog
        settings = self.app.settings
        now = self.app.clock()
        claims, records = claim_due(
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
        for claim in claims:
            self.enqueue(claim)
        return len(claims)

    def run(self, stop: threading.Event) -> None:
        interval = self.app.settings.tick_s
        while not stop.is_set():
            try:
                dispatched = self.tick()
            except Exception:
                logger.exception("scheduler tick failed; trying again")
                dispatched = 0
            if dispatched and self.backlog() <= self.batch // 2:
                continue
            self.wake.wait(interval)
            self.wake.clear()
