"""aioimaplib as this package uses it: one subclass holding every workaround for its bugs
(the only code here that touches aioimaplib's private attributes), and the parsing of the
responses it hands over.

The workarounds were written against aioimaplib 2.0.3; ``tests/mail/imap/test_protocol.py``
fails on any other version, so an upgrade re-checks each of them:

* aioimaplib drops an untagged ``* N EXISTS`` that comes with a command it did not expect it
  for (it logs "ignored untagged response"). Dovecot announces a message that way in the
  response to a SEARCH that ran just before it landed. ``Client(on_untagged=...)`` sees every
  untagged line first, by wrapping the protocol's private ``_untagged_response``.
* ``idle_start`` never returns when the server closes the connection instead of answering
  (https://github.com/iroco-co/aioimaplib/issues/110), and nothing wakes on a lost connection:
  the caller bounds every wait (``connection.Connection.bounded``).
* A response is parsed one recursion level per line, so one of more than ~1000 lines fails
  with RecursionError (https://github.com/iroco-co/aioimaplib/issues/118): FETCH at most
  ``MAX_CHUNK`` messages at a time.
* There is no call that drops a connection and what it started: ``Client.abort`` cancels the
  private connect task (``_client_task``) and IDLE timer (``_idle_waiter``) too.
* Its LOGIN debug line can show the password: ``_DropLoginLines`` keeps it out of any log.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aioimaplib import aioimaplib

from sequencer.errors import WatcherError

#: The aioimaplib version the workarounds below were checked against.
AIOIMAPLIB_VERSION = "2.0.3"

#: Largest ``chunk``: a FETCH of N bodies is ~3N response lines, parsed one recursion
#: level per line by aioimaplib (RecursionError near 1000, issue #118).
MAX_CHUNK = 250
_FETCH_START = re.compile(rb"^\d+ FETCH \(")
_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_LITERAL_ITEM = re.compile(rb"(BODY\[[^\]]*\])(?:<\d+>)? \{\d+\}$")
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_UIDNEXT = re.compile(rb"\[UIDNEXT (\d+)\]")


class _DropLoginLines(logging.Filter):
    """aioimaplib logs every command at DEBUG and masks the password only when quoting
    left it unchanged: its LOGIN lines never reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return " LOGIN " not in record.getMessage()


logging.getLogger("aioimaplib.aioimaplib").addFilter(_DropLoginLines())


class Client(aioimaplib.IMAP4):  # type: ignore[misc]  # aioimaplib ships no type information
    """aioimaplib's ``IMAP4`` plus the workarounds above, and nothing else."""

    def __init__(self, *, host: str, port: int, timeout: float,
                 conn_lost_cb: Callable[[Exception | None], None],
                 ssl_context: ssl.SSLContext | None,
                 on_untagged: Callable[[bytes], None]) -> None:
        super().__init__(host=host, port=port, timeout=timeout, conn_lost_cb=conn_lost_cb,
                         ssl_context=ssl_context)
        untagged = self.protocol._untagged_response

        def observe(line: bytes) -> Any:
            on_untagged(line)
            return untagged(line)

        self.protocol._untagged_response = observe

    def abort(self) -> None:
        """Drop the connection now and cancel everything aioimaplib started for it."""
        transport = self.protocol.transport
        if transport is not None:
            transport.abort()
        connecting = self._client_task
        if not connecting.done():
            connecting.cancel()
        elif not connecting.cancelled():
            connecting.exception()  # retrieved, so asyncio does not log it again
        if self._idle_waiter is not None:
            self._idle_waiter.cancel()
        for task in [*self.tasks, *self.protocol.tasks]:
            task.cancel()


@dataclass(frozen=True)
class FetchedMessage:
    """One message of a FETCH response: its UID, size and the body sections by name."""

    uid: int
    size: int | None
    sections: dict[bytes, bytes]


def parse_fetch(lines: Sequence[bytes | bytearray]) -> dict[int, FetchedMessage]:
    """Group an aioimaplib FETCH response into messages keyed by UID.

    aioimaplib hands literals over as ``bytearray`` items right after the line that
    announced them (``... BODY[HEADER]<0> {123}``); every other item is a ``bytes`` line.
    Messages without a UID (unsolicited flag updates) are left out.
    """
    found: dict[int, FetchedMessage] = {}
    meta = bytearray()
    sections: dict[bytes, bytes] = {}
    pending: bytes | None = None

    def flush() -> None:
        uid = _UID.search(meta)
        if uid is not None:
            size = _SIZE.search(meta)
            found[int(uid.group(1))] = FetchedMessage(
                uid=int(uid.group(1)),
                size=int(size.group(1)) if size else None,
                sections=dict(sections),
            )

    for line in lines:
        if isinstance(line, bytearray):
            if pending is not None:
                sections[pending] = bytes(line)
            pending = None
            continue
        if _FETCH_START.match(line):
            flush()
            meta.clear()
            sections.clear()
        meta += b" " + line
        item = _LITERAL_ITEM.search(line)
        pending = item.group(1).upper() if item else None
    flush()
    return found


def parse_search(lines: Sequence[bytes | bytearray]) -> list[int]:
    """The UIDs of a SEARCH response (the last line is the tagged completion text)."""
    uids: list[int] = []
    for line in lines[:-1]:
        uids.extend(int(token) for token in bytes(line).split() if token.isdigit())
    return uids


def parse_uidvalidity(lines: Sequence[bytes | bytearray]) -> int:
    """The UIDVALIDITY a SELECT response announced."""
    for line in lines:
        found = _UIDVALIDITY.search(bytes(line))
        if found:
            return int(found.group(1))
    raise WatcherError("the server sent no UIDVALIDITY in its SELECT response")


def parse_uidnext(lines: Sequence[bytes | bytearray]) -> int | None:
    """The UIDNEXT a SELECT response announced, if it did (RFC 3501 requires it, but
    not every server sends it)."""
    for line in lines:
        found = _UIDNEXT.search(bytes(line))
        if found:
            return int(found.group(1))
    return None


def uid_set(uids: Sequence[int]) -> str:
    """An IMAP sequence set for sorted UIDs, runs compressed: ``1:3,7,9:10``."""
    runs: list[str] = []
    start = prev = uids[0]
    for uid in list(uids[1:]) + [-1]:
        if uid == prev + 1:
            prev = uid
            continue
        runs.append(str(start) if start == prev else f"{start}:{prev}")
        start = prev = uid
    return ",".join(runs)


def expect_ok(response: Any, what: str) -> list[bytes | bytearray]:
    lines: list[bytes | bytearray] = list(response.lines)
    if response.result != "OK":
        text = bytes(lines[-1]).decode("ascii", "replace") if lines else ""
        raise WatcherError(f"{what} failed: {response.result} {text}".strip())
    return lines
