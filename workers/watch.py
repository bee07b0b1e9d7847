"""Inbox watchers: one per mailbox that has an `imap:` or `inbox: maildir:` setting.

Each runs in its own thread and event loop and holds a lease on its mailbox in the
database, so only one process watches a mailbox at a time. While it holds the lease it
reports its health (``store.health``): at once when its state or last error changes,
otherwise every ``REPORT_EVERY_S``, off the event loop; a failed report is logged, never
fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading

from sequencer.config import MailboxConfig, Settings
from sequencer.errors import WatcherError
from sequencer.mail.imap.connection import ImapAccount
from sequencer.mail.imap.watcher import ImapWatcher
from sequencer.mail.maildir import MaildirWatcher
from sequencer.mail.watching import Health, HealthState, Inbound, Watcher
from sequencer.store import health as store_health
from sequencer.store import inbound as store_inbound
from sequencer.usecases import receiving, resolving, sending
from sequencer.workspace import Workspace

logger = logging.getLogger(__name__)

LEASE_S = 60.0


#: How often a watcher polls a server without IDLE.
POLL_S = 30.0


def silent_after_s(settings: Settings) -> float:
    """A watching IMAP watcher whose server has not answered for this long is silent, even
    if it still says it watches: the server answers at least every ``imap_idle`` (a re-IDLE)
    or poll, each wait is bounded by ``imap_timeout``, and the report may be a heartbeat
    old."""
    return (max(settings.idle_s, POLL_S) + 2 * settings.imap_timeout_s
            + store_health.REPORT_EVERY_S)


def make_watcher(app: Workspace, mailbox: MailboxConfig, cursors: store_inbound.DbCursorStore
                 ) -> Watcher | None:
    async def handler(message: Inbound) -> None:
        receiving.handle(app, mailbox.name, message)

    if mailbox.imap is not None:
        cfg = mailbox.imap
        account = ImapAccount(host=cfg.host, port=cfg.port, username=cfg.username,
                              password=cfg.password.reveal() if cfg.password else "",
                              tls=cfg.tls, folder=cfg.folder,
                              tokens=app.tokens.get(mailbox.name))
        return ImapWatcher(mailbox.name, account, cursors, handler,
                           idle_s=app.settings.idle_s, timeout_s=app.settings.imap_timeout_s,
                           on_auth_failure=lambda reason: sending.pause_mailbox(
                               app, mailbox.name, f"IMAP login refused: {reason}", auth=True),
                           poll_s=POLL_S, clock=app.clock)
    if mailbox.inbox is not None:
        return MaildirWatcher(mailbox.name, mailbox.inbox, cursors, handler)
    return None


async def _watch(app: Workspace, mailbox: MailboxConfig, stop: threading.Event) -> None:
    """Supervise one mailbox's watcher: take the lease, run, and start again after any
    failure (a lost lease, a database error) with a capped backoff, until ``stop``."""
    owner = f"{socket.gethostname()}:{os.getpid()}:{mailbox.name}"
    backoff = 1.0
    while not stop.is_set():
        try:
            await _watch_once(app, mailbox, stop, owner)
            backoff = 1.0
        except Exception:
            logger.exception("watcher for mailbox %s failed; starting it again in %.0f s",
                             mailbox.name, backoff)
        if stop.is_set():
            break
        await _sleep_unless(stop, backoff)
        backoff = min(backoff * 2, 30.0)
    with contextlib.suppress(Exception):
        store_inbound.drop_lease(app.store, mailbox.name, owner)


async def _sleep_unless(stop: threading.Event, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not stop.is_set() and loop.time() < deadline:
        await asyncio.sleep(0.1)


class Reporter:
    """Writes one watcher's health to the database: on a change of state or error at once
    (checked every ``CHECK_S``), a changed cursor lag at most every ``LAG_EVERY_S`` (a
    long catch-up), otherwise every ``REPORT_EVERY_S``; never raises."""

    CHECK_S = 0.25
    LAG_EVERY_S = 1.0

    def __init__(self, app: Workspace, name: str, watcher: Watcher) -> None:
        self._app = app
        self._name = name
        self._watcher = watcher
        self._started = Health(HealthState.WATCHING, app.clock())  # a Maildir: no server
        self._written: tuple[object, ...] | None = None
        self._written_at = float("-inf")
        self._retry_at = float("-inf")
        self._lag: int | None = None

    def health(self) -> Health:
        if isinstance(self._watcher, ImapWatcher):
            return self._watcher.health()
        return self._started

    async def finish(self) -> None:
        """The watcher stopped: report that, whatever the heartbeat's schedule."""
        if not isinstance(self._watcher, ImapWatcher):
            self._started = Health(HealthState.STOPPED, self._app.clock())
        await self.report(force=True)

    async def report(self, *, force: bool = False) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        health = self.health()
        key = (health.state, health.last_error, health.last_error_at)
        since = now - self._written_at
        due = (key != self._written or since >= store_health.REPORT_EVERY_S
               or (health.cursor_lag != self._lag and since >= self.LAG_EVERY_S))
        if not force and (now < self._retry_at or not due):
            return
        try:
            await asyncio.to_thread(store_health.report, self._app.store, self._name, health,
                                    self._app.clock())
        except Exception:
            self._retry_at = now + store_health.REPORT_EVERY_S
            logger.warning("mailbox %s: cannot record the watcher's health; trying again in "
                           "%.0f s", self._name, store_health.REPORT_EVERY_S, exc_info=True)
            return
        self._written, self._written_at, self._lag = key, now, health.cursor_lag

    async def keep_reporting(self, done: asyncio.Event) -> None:
        while not done.is_set():
            await self.report()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.CHECK_S)


def _try_lease(app: Workspace, name: str, owner: str) -> bool:
    try:
        return store_inbound.hold_lease(app.store, name, owner, app.clock(), LEASE_S)
    except Exception:
        logger.warning("cannot renew the lease on mailbox %s", name, exc_info=True)
        return False


async def _watch_once(app: Workspace, mailbox: MailboxConfig, stop: threading.Event,
                      owner: str) -> None:
    cursors = store_inbound.DbCursorStore(app.store)
    watcher = make_watcher(app, mailbox, cursors)
    if watcher is None:
        return
    while not stop.is_set():  # wait for the lease
        if _try_lease(app, mailbox.name, owner):
            break
        logger.info("mailbox %s is watched by another process; waiting", mailbox.name)
        await _sleep_unless(stop, LEASE_S / 3)
    if stop.is_set():
        return
    logger.info("watching mailbox %s", mailbox.name)
    done = asyncio.Event()
    lost = False

    async def keep_lease() -> None:
        nonlocal lost
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        while not done.is_set():
            await asyncio.sleep(0.2)
            if stop.is_set():
                done.set()
                return
            if loop.time() - renewed < LEASE_S / 3:
                continue
            if _try_lease(app, mailbox.name, owner):
                renewed = loop.time()
            elif loop.time() - renewed > LEASE_S * 0.8:
                logger.warning("lost the lease on mailbox %s; its watcher stops and will "
                               "try to take it again", mailbox.name)
                lost = True
                done.set()

    lease_task = asyncio.create_task(keep_lease())
    reporter = Reporter(app, mailbox.name, watcher)
    report_task = asyncio.create_task(reporter.keep_reporting(done))
    # While it holds the lease, the watcher also looks for its unknown steps in Sent.
    resolve_task = asyncio.create_task(resolving.keep_resolving(app, mailbox.name, done))
    try:
        await watcher.run(done)
    finally:
        done.set()
        await lease_task
        await resolve_task
        await report_task
        if not lost:  # stopped: say so (after a lost lease, the new holder reports)
            await reporter.finish()
    if lost:
        raise WatcherError(f"lost the lease on mailbox {mailbox.name}")


def start_watchers(app: Workspace, stop: threading.Event) -> list[threading.Thread]:
    threads = []
    for mailbox in app.settings.mailboxes.values():
        if mailbox.imap is None and mailbox.inbox is None:
            continue
        thread = threading.Thread(target=asyncio.run, args=(_watch(app, mailbox, stop),),
                                  name=f"watch-{mailbox.name}", daemon=True)
        thread.start()
        threads.append(thread)
    return threads
