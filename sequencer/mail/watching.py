"""The inbox watcher contract shared by the IMAP and Maildir watchers.

A watcher knows nothing about the database or about classification: it hands each raw
inbound message to a ``Handler`` and remembers how far it got through a ``CursorStore``.
The cursor is saved after every handled message, so a crash never skips a message and at
most repeats the one in flight (callers dedupe by Message-ID).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

#: How much of the body of an oversized message is handed over (the header comes whole).
TRUNCATED_BODY_BYTES = 64 * 1024

#: Default largest message handed over whole.
DEFAULT_MAX_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class Cursor:
    """How far a watcher got in one mailbox.

    ``uidvalidity`` is the IMAP UIDVALIDITY the UIDs belong to (None before the first
    connect, and always None for a Maildir); ``last_uid`` is the highest UID handled,
    0 when nothing was seen yet.
    """

    uidvalidity: int | None
    last_uid: int


NO_CURSOR = Cursor(uidvalidity=None, last_uid=0)


class CursorStore(Protocol):
    """Where a watcher keeps its cursor, one per mailbox name."""

    def load(self, mailbox: str) -> Cursor: ...

    def save(self, mailbox: str, cursor: Cursor) -> None: ...


@dataclass(frozen=True)
class Inbound:
    """One inbound message as the watcher saw it.

    ``uid`` is the IMAP UID, or the watcher's own sequence number for a Maildir.
    ``raw`` is the message; when ``truncated`` is true it is only the header and the
    first ``TRUNCATED_BODY_BYTES`` of the body, because the message was over the limit.
    """

    uid: int
    raw: bytes
    truncated: bool = False

    def __repr__(self) -> str:
        return f"Inbound(uid={self.uid}, bytes={len(self.raw)}, truncated={self.truncated})"


Handler = Callable[[Inbound], Awaitable[None]]


class HealthState(enum.Enum):
    """How a watcher is doing, as ``status --mailboxes`` shows it."""

    CONNECTING = "connecting"  # not connected yet since it started
    WATCHING = "watching"  # connected, the folder selected, the server answering
    FAILING = "failing"  # the last session failed (refused, dropped, an error): retrying
    SILENT = "silent"  # connected, but the server stopped answering within the timeout
    AUTH_NEEDED = "auth_needed"  # the login was refused: a person must act
    STOPPED = "stopped"  # the watcher was stopped


@dataclass(frozen=True)
class Health:
    """One watcher's health at one moment (``ImapWatcher.health``).

    ``cursor_lag`` is how many UIDs the server has past the cursor (UIDNEXT - 1 at SELECT,
    then the highest UID a SEARCH found, minus the last UID handled), None when unknown.
    """

    state: HealthState
    since: datetime
    last_answer_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    cursor_lag: int | None = None


class Watcher(Protocol):
    """Watches one mailbox until ``stop`` is set, then returns."""

    async def run(self, stop: asyncio.Event) -> None: ...
