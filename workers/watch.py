"""Inbox watchers: one per mailbox that has an `imap:` or `inbox: maildir:` setting.

Each runs in its own thread and event loop and holds a lease on its mailbox in the
database, so only one process watches a mailbox at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading

from sequencer.config import MailboxConfig
from sequencer.errors import WatcherError
from sequencer.mail.imap.connection import ImapAccount
from sequencer.mail.imap.watcher import ImapWatcher
from sequencer.mail.maildir import MaildirWatcher
from sequencer.mail.watching import Inbound, Watcher
from sequencer.store import inbound as store_inbound
from sequencer.usecases import receiving, resolving, sending
from sequencer.workspace import Workspace

logger = logging.getLogger(__name__)

LEASE_S = 60.0


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
                               app, mailbox.name, f"IMAP login refused: {reason}"))
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
    # While it holds the lease, the watcher also looks for its unknown steps in Sent.
    resolve_task = asyncio.create_task(resolving.keep_resolving(app, mailbox.name, done))
    try:
        await watcher.run(done)
    finally:
        done.set()
        await lease_task
        await resolve_task
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
