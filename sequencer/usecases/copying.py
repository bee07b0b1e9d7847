"""Sent copies (``save_sent``): each sent message, the exact bytes the server took, is
APPENDed to its mailbox's Sent folder, so the prospect's thread shows in the user's mail
client like any mail they sent.

Off the send path: the sender records the step first, then hands the bytes to the process's
``SentCopies``, whose own thread and event loop APPEND them over one reused IMAP connection
per mailbox. A failed APPEND is logged (after one retry on a fresh connection) and never
touches the step: it was sent, it stays sent, nothing is resent. A process killed before
the APPEND loses that copy; a stopping one finishes its queue first (bounded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from datetime import datetime

from sequencer.config import MailboxConfig
from sequencer.mail.imap import sent
from sequencer.mail.imap.connection import Connection, ImapAccount
from sequencer.workspace import Workspace

logger = logging.getLogger(__name__)

QUEUE_MAX = 10_000


def imap_account(app: Workspace, box: MailboxConfig) -> ImapAccount:
    """The mailbox's IMAP login (its ``imap:`` settings must exist)."""
    cfg = box.imap
    if cfg is None:
        raise ValueError(f"mailbox {box.name} has no imap: settings")
    return ImapAccount(host=cfg.host, port=cfg.port, username=cfg.username,
                       password=cfg.password.reveal() if cfg.password else "",
                       tls=cfg.tls, folder=cfg.folder, tokens=app.tokens.get(box.name))


class SentCopies:
    """One process's queue of Sent copies and the thread that APPENDs them."""

    def __init__(self, app: Workspace) -> None:
        self.app = app
        self._queue: queue.Queue[tuple[str, bytes, datetime] | None] = queue.Queue(QUEUE_MAX)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, mailbox: str, data: bytes, at: datetime) -> None:
        """Copy ``data`` (sent from ``mailbox`` at ``at``) to Sent, later; never blocks."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=asyncio.run, args=(self._main(),),
                                                name="sent-copies", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait((mailbox, data, at))
        except queue.Full:
            logger.warning("sent copy for mailbox %s dropped: %d copies are waiting already",
                           mailbox, QUEUE_MAX)

    def close(self, timeout_s: float = 30.0) -> None:
        """Finish the queued copies (for at most ``timeout_s``) and stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(None)
        thread.join(timeout_s)
        if thread.is_alive():
            logger.warning("sent copies: still busy after %.0f s; the rest are dropped",
                           timeout_s)

    async def _main(self) -> None:
        open_: dict[str, tuple[Connection, str]] = {}
        try:
            while True:
                item = await asyncio.to_thread(self._queue.get)
                if item is None:
                    return
                mailbox, data, at = item
                await self._copy(open_, mailbox, data, at)
        finally:
            for connection, _ in open_.values():
                with contextlib.suppress(Exception):
                    await connection.close(polite=True)

    async def _copy(self, open_: dict[str, tuple[Connection, str]], mailbox: str,
                    data: bytes, at: datetime) -> None:
        box = self.app.settings.mailboxes.get(mailbox)
        if box is None or box.imap is None:
            return
        for attempt in (1, 2):
            try:
                if mailbox not in open_:
                    connection = Connection(imap_account(self.app, box),
                                            self.app.settings.imap_timeout_s, None,
                                            asyncio.Event())
                    await connection.open()
                    open_[mailbox] = (connection, "")
                    open_[mailbox] = (connection,
                                      await sent.find_sent(connection, box.imap.sent_folder))
                connection, folder = open_[mailbox]
                await sent.append(connection, folder, data, at)
                logger.debug("sent copy for mailbox %s saved in %s", mailbox, folder)
                return
            except Exception as err:  # a copy never fails a send: log it, drop the line
                stale = open_.pop(mailbox, None)
                if stale is not None:
                    with contextlib.suppress(Exception):
                        await stale[0].close(polite=False)
                if attempt == 2:
                    logger.warning("sent copy for mailbox %s not saved: %s: %s (the message "
                                   "was sent; nothing is resent)", mailbox,
                                   type(err).__name__, err)
