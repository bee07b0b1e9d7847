"""The webhook deliverer: a loop in ``sequencer run`` (and ``sequencer scheduler``) that
POSTs the outbox's due rows, signed, and retries failures with capped exponential backoff.

HTTP goes through httpx2 (already a dependency, for OAuth2): timeouts on connect and read,
connection reuse, and it raises rather than hangs (docs/contract.md, "Webhooks").
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import httpx2

from sequencer.core.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, backoff, signature
from sequencer.store import webhooks as outbox
from sequencer.store.db import utcnow
from sequencer.workspace import Workspace

logger = logging.getLogger(__name__)

#: A claimed row's lease beyond the POST's own timeout: a deliverer killed mid-POST leaves
#: the row to be tried again (by any deliverer) once the lease runs out.
LEASE_MARGIN_S = 5.0


class Deliverer:
    def __init__(self, app: Workspace, *, poll_s: float | None = None) -> None:
        self.app = app
        self.hooks = {h.url: h for h in app.settings.webhooks}
        self.poll_s = poll_s if poll_s is not None else min(app.settings.tick_s, 1.0)
        self.wake = threading.Event()
        self.stopping = threading.Event()

    def tick(self, client: httpx2.Client) -> int:
        """Try every due delivery once; returns how many were delivered."""
        settings = self.app.settings
        sent = 0
        lease = settings.webhook_timeout_s + LEASE_MARGIN_S
        # One row claimed at a time, so that a lease covers one POST only.
        while not self.stopping.is_set():
            claimed = outbox.claim(self.app.store, utcnow(), self.hooks, lease_s=lease,
                                   limit=1)
            if not claimed:
                break
            d = claimed[0]
            hook = self.hooks[d.url]
            body = d.body.encode()
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature(hook.secret.reveal(), int(time.time()), body),
                EVENT_ID_HEADER: d.event_uid,
                "User-Agent": "sequencer-webhooks",
            }
            error: str | None = None
            try:
                response = client.post(d.url, content=body, headers=headers)
                if not 200 <= response.status_code < 300:
                    error = f"HTTP {response.status_code}"
            except httpx2.HTTPError as err:
                error = f"{type(err).__name__}: {err}"
            if error is None:
                outbox.delivered(self.app.store, d.id, utcnow())
                sent += 1
                continue
            wait = backoff(d.attempts + 1, settings.webhook_backoff_s,
                           settings.webhook_max_backoff_s)
            outbox.failed(self.app.store, d.id, utcnow() + timedelta(seconds=wait), error)
            logger.warning("webhook %s: event %s (%s) not delivered (%s, try %d); again in "
                           "%.1fs", d.url, d.event_uid, d.event, error, d.attempts + 1, wait)
        return sent

    def run(self, stop: threading.Event) -> None:
        if not self.hooks:
            return
        self.stopping = stop
        timeout = self.app.settings.webhook_timeout_s
        with httpx2.Client(timeout=timeout, follow_redirects=False) as client:
            while not stop.is_set():
                try:
                    self.tick(client)
                except Exception:
                    logger.exception("webhook delivery failed; trying again")
                self.wake.wait(self.poll_s)
                self.wake.clear()
