"""The inbox watcher contract shared by the IMAP and Maildir watchers.

A watcher knows nothing about the database or about classification: it hands each raw
inbound message to a ``Handler`` and remembers how far it got through a ``CursorStore``.
The cursor is saved after every handled message, so a crash never skips a message and at
most repeats the one in flight (callers dedupe by Message-ID).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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


class Watcher(Protocol):
    """Watches one mailbox until ``stop`` is set, then returns."""

    async def run(self, stop: asyncio.Event) -> None: ...
