"""The Sent folder over IMAP: find it, APPEND a sent message to it, and look a message up in
it by Message-ID. Each call runs on an open ``connection.Connection``.

The folder is the one the settings name (``imap.sent_folder``), else the one the server
marks ``\\Sent`` (RFC 6154): ``LIST (SPECIAL-USE) "" "*"`` where the server announces
SPECIAL-USE, else the attributes of a plain ``LIST "" "*"`` (many servers put them there
too). Folder names are sent as the server wrote them (modified UTF-7 included).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from aioimaplib import aioimaplib

from sequencer.errors import WatcherError
from sequencer.mail.imap.connection import Connection
from sequencer.mail.imap.protocol import expect_ok, parse_search

_LIST = re.compile(rb'^\((?P<flags>[^)]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) (?P<name>.+)$',
                   re.IGNORECASE)
_LITERAL = re.compile(rb"^\{\d+\}$")


def parse_list(lines: Sequence[bytes | bytearray]) -> list[tuple[frozenset[str], str]]:
    """``(attributes, name)`` for each mailbox of a LIST response (aioimaplib hands over
    ``(\\HasNoChildren \\Sent) "/" Sent`` without the ``* LIST`` prefix, and a name sent as
    a literal as the ``bytearray`` item after its line)."""
    found: list[tuple[frozenset[str], str]] = []
    pending: frozenset[str] | None = None
    for line in lines[:-1]:
        if isinstance(line, bytearray):
            if pending is not None:
                found.append((pending, bytes(line).decode("ascii", "replace")))
            pending = None
            continue
        match = _LIST.match(bytes(line).removeprefix(b"LIST ").strip())
        if match is None:
            continue
        flags = frozenset(f.lower() for f in match.group("flags").decode("ascii",
                                                                         "replace").split())
        name = match.group("name").strip()
        if _LITERAL.match(name):
            pending = flags
            continue
        if name.startswith(b'"') and name.endswith(b'"'):
            name = re.sub(rb"\\(.)", rb"\1", name[1:-1])
        found.append((flags, name.decode("ascii", "replace")))
    return found


async def find_sent(connection: Connection, configured: str | None) -> str:
    """The Sent folder's name: ``configured``, else the one marked ``\\Sent``."""
    if configured is not None:
        return configured
    client = connection.client
    patterns = ['""']
    if client.has_capability("SPECIAL-USE"):
        patterns.insert(0, '(SPECIAL-USE) ""')
    for reference in patterns:
        response = await connection.bounded(client.list(reference, '"*"'), "LIST")
        if response.result != "OK":
            continue
        for flags, name in parse_list(list(response.lines)):
            if "\\sent" in flags:
                return name
    raise WatcherError("the server marks no folder \\Sent (RFC 6154): name it with "
                       "imap.sent_folder")


async def append(connection: Connection, folder: str, data: bytes, when: datetime) -> None:
    """APPEND ``data`` (the exact bytes sent) to ``folder``, ``\\Seen``, dated ``when``."""
    response = await connection.bounded(
        connection.client.append(data, mailbox=aioimaplib.quoted(folder), flags="(\\Seen)",
                                 date=when),
        f"APPEND {folder}")
    expect_ok(response, f"APPEND {folder}")


async def holds(connection: Connection, folder: str, message_ids: Sequence[str]
                ) -> set[str]:
    """Which of ``message_ids`` are in ``folder`` (``UID SEARCH HEADER Message-ID``)."""
    client = connection.client
    # SELECT, not EXAMINE: aioimaplib allows SEARCH only after its own select() (it never
    # enters the selected state on EXAMINE); searching changes nothing in the folder.
    await connection.select(folder)
    found: set[str] = set()
    for mid in message_ids:
        if any(c in mid for c in '"\\\r\n'):
            continue  # never ours: we write the Message-ID ourselves
        response = await connection.bounded(
            client.uid_search("HEADER", "Message-ID", f'"{mid}"', charset=None),
            "UID SEARCH HEADER")
        if parse_search(expect_ok(response, "UID SEARCH HEADER")):
            found.add(mid)
    return found
