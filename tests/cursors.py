"""A watcher cursor store held in memory, for watcher tests."""

from __future__ import annotations

from sequencer.mail.watching import NO_CURSOR, Cursor


class MemoryCursorStore:
    """A dict-backed ``CursorStore``; forgets everything on exit."""

    def __init__(self) -> None:
        self._cursors: dict[str, Cursor] = {}

    def load(self, mailbox: str) -> Cursor:
        return self._cursors.get(mailbox, NO_CURSOR)

    def save(self, mailbox: str, cursor: Cursor) -> None:
        self._cursors[mailbox] = cursor
