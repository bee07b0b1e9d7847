"""Inbox watchers: one per mailbox that has an `imap:` or `inbox: maildir:` setting.

All of a process's watchers share one event loop in one thread (``Watchers``), with their
database work in a bounded thread pool. Each holds a lease on its mailbox in the database,
so only one process watches a mailbox at a time; the process renews its leases in one
batch (``Leases``). While it holds the lease a watcher reports its health
(``store.health``): at once when its state or last error changes, otherwise every
``REPORT_EVERY_S``, off the event loop; a failed report is logged, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

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

#: Threads for the watchers' database work, however many mailboxes there are.
DB_THREADS = 4


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
        # Database work: in the loop's bounded pool, never on the loop the watchers share.
        await asyncio.to_thread(receiving.handle, app, mailbox.name, message)

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

    def due(self, now: float, *, force: bool = False) -> Health | None:
        """The health to write now (``now``: the loop's clock), or None."""
        health = self.health()
        key = (health.state, health.last_error, health.last_error_at)
        since = now - self._written_at
        due = (key != self._written or since >= store_health.REPORT_EVERY_S
               or (health.cursor_lag != self._lag and since >= self.LAG_EVERY_S))
        if not force and (now < self._retry_at or not due):
            return None
        return health

    def written(self, health: Health, now: float) -> None:
        self._written = (health.state, health.last_error, health.last_error_at)
        self._written_at, self._lag = now, health.cursor_lag

    def failed(self, now: float) -> None:
        self._retry_at = now + store_health.REPORT_EVERY_S
        logger.warning("mailbox %s: cannot record the watcher's health; trying again in "
                       "%.0f s", self._name, store_health.REPORT_EVERY_S, exc_info=True)

    async def report(self, *, force: bool = False) -> None:
        now = asyncio.get_running_loop().time()
        health = self.due(now, force=force)
        if health is None:
            return
        try:
            await asyncio.to_thread(store_health.report, self._app.store, self._name, health,
                                    self._app.clock())
        except Exception:
            self.failed(now)
            return
        self.written(health, now)


async def report_all(app: Workspace, reporters: Mapping[str, Reporter]) -> None:
    """Every report that is due, in one transaction (a heartbeat every 10 s per mailbox
    is 20 transactions a second at 200 mailboxes, one at a time)."""
    now = asyncio.get_running_loop().time()
    due = [(name, reporter, health) for name, reporter in list(reporters.items())
           if (health := reporter.due(now)) is not None]
    if not due:
        return
    try:
        await asyncio.to_thread(store_health.report_many, app.store,
                                [(name, health) for name, _, health in due], app.clock())
    except Exception:
        for _, reporter, _ in due:
            reporter.failed(now)
        return
    for _, reporter, health in due:
        reporter.written(health, now)


class Leases:
    """The mailbox leases this process holds, renewed together: one statement every
    ``lease_s / 3`` (the ``watch_lease`` setting, 60 s by default) for all of them, not a poll per
    mailbox. A lease another process took over (after it ran out) is lost at once; one that
    could not be renewed (a database error) is lost when ``lease_s * 0.8`` passed since its
    last renewal. A lost lease sets its watcher's ``done`` event."""

    RETRY_S = 5.0

    def __init__(self, app: Workspace, owner: str) -> None:
        self._app = app
        self.owner = owner
        self.lease_s = app.settings.watch_lease_s
        self._held: dict[str, tuple[asyncio.Event, float]] = {}  # name -> (done, renewed)
        self._lost: set[str] = set()

    async def take(self, name: str) -> bool:
        try:
            return await asyncio.to_thread(store_inbound.hold_lease, self._app.store, name,
                                           self.owner, self._app.clock(), self.lease_s)
        except Exception:
            logger.warning("cannot take the lease on mailbox %s", name, exc_info=True)
            return False

    def hold(self, name: str, done: asyncio.Event) -> None:
        self._lost.discard(name)
        self._held[name] = (done, asyncio.get_running_loop().time())

    def release(self, name: str) -> bool:
        """Stop renewing ``name``; True when it had been lost."""
        self._held.pop(name, None)
        lost = name in self._lost
        self._lost.discard(name)
        return lost

    async def keep(self, stopping: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        wait = self.lease_s / 3
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), wait)
            if stopping.is_set() or not self._held:
                continue
            names = list(self._held)
            try:
                renewed: set[str] | None = await asyncio.to_thread(
                    store_inbound.renew_leases, self._app.store, names, self.owner,
                    self._app.clock(), self.lease_s)
            except Exception:
                logger.warning("cannot renew the leases on mailboxes %s", ", ".join(names),
                               exc_info=True)
                renewed = None
            now = loop.time()
            wait = self.lease_s / 3 if renewed is not None else self.RETRY_S
            for name in names:
                held = self._held.get(name)
                if held is None:
                    continue
                done, at = held
                if renewed is not None and name in renewed:
                    self._held[name] = (done, now)
                elif renewed is not None or now - at > self.lease_s * 0.8:
                    logger.warning("lost the lease on mailbox %s; its watcher stops and will "
                                   "try to take it again", name)
                    self._lost.add(name)
                    self._held.pop(name, None)
                    done.set()


class Watchers:
    """Every mailbox watcher of this process on one event loop, in one thread.

    Database work (handling a message, saving a cursor, leases, health reports) goes
    through a bounded pool of ``db_threads`` threads, the loop's default executor; leases
    are renewed in one batch (``Leases``) and health is checked for all mailboxes by one
    task. So a process's threads, file descriptors and idle wake-ups do not grow with its
    mailboxes: each mailbox costs one IMAP connection and a few tasks.
    """

    def __init__(self, app: Workspace, stop: threading.Event, *,
                 db_threads: int = DB_THREADS) -> None:
        self.app = app
        self._stop = stop
        self._db_threads = db_threads
        owner = f"{socket.gethostname()}:{os.getpid()}"
        self.leases = Leases(app, owner[-64:])
        self.stopping = asyncio.Event()
        self.watching: dict[str, asyncio.Event] = {}
        self.reporters: dict[str, Reporter] = {}

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=asyncio.run, args=(self._main(),), name="watchers",
                                  daemon=True)
        thread.start()
        return thread

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(self._db_threads,
                                                     thread_name_prefix="watch-db"))
        threading.Thread(target=self._wait_for_stop, args=(loop,), name="watchers-stop",
                         daemon=True).start()
        boxes = [m for m in self.app.settings.mailboxes.values()
                 if m.imap is not None or m.inbox is not None]
        await asyncio.gather(self.leases.keep(self.stopping), self._keep_reporting(),
                             *(self._watch(mailbox) for mailbox in boxes))

    def _wait_for_stop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._stop.wait()
        with contextlib.suppress(RuntimeError):  # the loop ended first
            loop.call_soon_threadsafe(self._stopped)

    def _stopped(self) -> None:
        self.stopping.set()
        for done in self.watching.values():
            done.set()

    async def sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def _keep_reporting(self) -> None:
        while not self.stopping.is_set():
            await report_all(self.app, self.reporters)
            await self.sleep(Reporter.CHECK_S)

    async def _watch(self, mailbox: MailboxConfig) -> None:
        """Supervise one mailbox's watcher: take the lease, run, and start again after any
        failure (a lost lease, a database error) with a capped backoff, until stopped."""
        backoff = 1.0
        while not self.stopping.is_set():
            try:
                await self._watch_once(mailbox)
                backoff = 1.0
            except Exception:
                logger.exception("watcher for mailbox %s failed; starting it again in %.0f s",
                                 mailbox.name, backoff)
            if self.stopping.is_set():
                break
            await self.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(store_inbound.drop_lease, self.app.store, mailbox.name,
                                    self.leases.owner)

    async def _watch_once(self, mailbox: MailboxConfig) -> None:
        app, name = self.app, mailbox.name
        watcher = make_watcher(app, mailbox, store_inbound.DbCursorStore(app.store))
        if watcher is None:
            return
        while not self.stopping.is_set():  # wait for the lease
            if await self.leases.take(name):
                break
            logger.info("mailbox %s is watched by another process; waiting", name)
            await self.sleep(self.leases.lease_s / 3)
        if self.stopping.is_set():
            return
        logger.info("watching mailbox %s", name)
        done = asyncio.Event()
        self.watching[name] = done
        self.leases.hold(name, done)
        reporter = self.reporters[name] = Reporter(app, name, watcher)
        # While it holds the lease, the watcher also looks for its unknown steps in Sent.
        resolve_task = asyncio.create_task(resolving.keep_resolving(app, name, done))
        try:
            await watcher.run(done)
        finally:
            done.set()
            lost = self.leases.release(name)
            self.watching.pop(name, None)
            self.reporters.pop(name, None)
            await resolve_task
            if not lost:  # stopped: say so (after a lost lease, the new holder reports)
                await reporter.finish()
        if lost:
            raise WatcherError(f"lost the lease on mailbox {name}")


def start_watchers(app: Workspace, stop: threading.Event) -> list[threading.Thread]:
    """One thread with every mailbox's watcher (none when no mailbox is watched)."""
    if not any(m.imap is not None or m.inbox is not None
               for m in app.settings.mailboxes.values()):
        return []
    return [Watchers(app, stop).start()]
