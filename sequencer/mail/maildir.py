"""The Maildir inbox watcher: the same contract as the IMAP watcher, for a local Maildir.

Design (the choice the contract asked to document): ``new/`` is the queue. Every poll
(``poll_s``) the watcher lists ``new/``, sorts the files by (mtime, name), hands each one
to the handler and then moves it to ``cur/`` with an empty info suffix (``NAME:2,``):
the Maildir standard for "a client has seen this", without the ``S`` (seen) flag, so a
mail reader still shows it unread. What has been handled is therefore kept by the
filesystem itself, and a restart never hands a message over twice; only a crash between
the handler returning and the rename repeats that one message (callers dedupe by
Message-ID). Files already in ``cur/`` were seen by a client or by this watcher and are
never handed over; ``tmp/`` is ignored (deliveries in progress).

The cursor is a counter: ``uid`` is ``last_uid + 1`` for each message handed over, saved
after each one, ``uidvalidity`` is always None. It numbers messages for the log and the
handler; it is not what prevents repeats.

A message over ``max_bytes`` is handed over as its header plus the first 64 KiB of its
body, ``truncated=True``. A handler that raises is logged and the message moved anyway:
one hostile message never stops the watcher. Missing ``new/``, ``cur/`` and ``tmp/``
directories are created.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from sequencer.errors import InvalidArgument, RetryLater, SequencerError
from sequencer.mail.watching import (
    DEFAULT_MAX_BYTES,
    TRUNCATED_BODY_BYTES,
    Cursor,
    CursorStore,
    Handler,
    Inbound,
)

logger = logging.getLogger(__name__)

_INFO_SEPARATOR = ":"


def read_message(path: Path, max_bytes: int) -> tuple[bytes, bool]:
    """The message in ``path`` and whether it was truncated (header + 64 KiB of body)."""
    with path.open("rb") as file:
        data = file.read(max_bytes + 1)
    if len(data) <= max_bytes:
        return data, False
    ends = [
        found + len(blank) for blank in (b"\r\n\r\n", b"\n\n") if (found := data.find(blank)) >= 0
    ]
    if not ends:
        return data[:max_bytes], True
    return data[: min(ends) + TRUNCATED_BODY_BYTES], True


def seen_name(name: str) -> str:
    """The file name a message gets in ``cur/``: the Maildir info suffix, no flags."""
    return name if _INFO_SEPARATOR in name else f"{name}{_INFO_SEPARATOR}2,"


class MaildirWatcher:
    """Watches ``path/new`` and hands each message to ``handler``; see the module docs.

    The cursor is stored under ``name`` (the configured mailbox name).
    """

    def __init__(
        self,
        name: str,
        path: Path,
        cursors: CursorStore,
        handler: Handler,
        *,
        poll_s: float = 0.2,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if poll_s <= 0 or max_bytes < 1:
            raise InvalidArgument("poll_s and max_bytes must be positive")
        self._name = name
        self._path = Path(path)
        self._cursors = cursors
        self._handler = handler
        self._poll_s = poll_s
        self._max_bytes = max_bytes

    def __repr__(self) -> str:
        return f"MaildirWatcher(name={self._name!r}, path={str(self._path)!r})"

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until ``stop`` is set. A failing poll is logged and tried again."""
        for sub in ("new", "cur", "tmp"):
            (self._path / sub).mkdir(parents=True, exist_ok=True)
        logger.info("maildir %s: watching %s", self._name, self._path)
        while not stop.is_set():
            try:
                await self._poll(stop)
            except OSError as err:
                logger.warning("maildir %s: cannot read %s: %s", self._name, self._path, err)
            except SequencerError as err:  # the store failed: the message stays in new/
                logger.warning("maildir %s: will try again: %s", self._name, err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._poll_s)
        logger.info("maildir %s: watcher stopped", self._name)

    def _pending(self) -> list[Path]:
        keyed: list[tuple[int, str, Path]] = []
        with os.scandir(self._path / "new") as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    if entry.is_file():
                        keyed.append((entry.stat().st_mtime_ns, entry.name, Path(entry.path)))
        return [path for _, _, path in sorted(keyed)]

    async def _poll(self, stop: asyncio.Event) -> None:
        for path in self._pending():
            if stop.is_set():
                return
            await self._deliver(path)

    async def _deliver(self, path: Path) -> None:
        try:
            raw, truncated = await asyncio.to_thread(read_message, path, self._max_bytes)
        except FileNotFoundError:
            return  # a mail reader took it meanwhile: it is no longer ours to hand over
        cursor = self._cursors.load(self._name)
        inbound = Inbound(uid=cursor.last_uid + 1, raw=raw, truncated=truncated)
        if truncated:
            logger.info(
                "maildir %s: %s is over %d bytes; handing over its header and first %d body bytes",
                self._name,
                path.name,
                self._max_bytes,
                TRUNCATED_BODY_BYTES,
            )
        try:
            await self._handler(inbound)
        except RetryLater:
            raise  # not handled: leave it in new/ and try again on the next poll
        except Exception:
            logger.exception(
                "maildir %s: handler failed on %s; message skipped", self._name, path.name
            )
        with contextlib.suppress(FileNotFoundError):
            path.rename(self._path / "cur" / seen_name(path.name))
        self._cursors.save(self._name, Cursor(uidvalidity=None, last_uid=inbound.uid))
