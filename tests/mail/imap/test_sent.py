"""The Sent folder against a real Dovecot whose Sent is marked ``\\Sent`` (RFC 6154):
found by SPECIAL-USE, the exact bytes APPENDed, and a lookup by Message-ID."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sequencer.mail.imap import sent
from sequencer.mail.imap.connection import Connection, ImapAccount
from tests.fixtures.dovecot import DovecotServer

RAW = (b"From: Dana <dana@example.com>\r\nTo: ann@example.com\r\nSubject: Thanks\r\n"
       b"Message-ID: <abc123@example.com>\r\nDate: Mon, 23 Nov 2026 15:00:00 +0000\r\n"
       b"\r\nHi Ann,\r\nthanks!\r\n")


def connection_to(dovecot: DovecotServer) -> Connection:
    account = ImapAccount(host=dovecot.host, port=dovecot.port, username=dovecot.username,
                          password=dovecot.password, tls="none")
    return Connection(account, 10.0, None, asyncio.Event())


async def test_the_sent_copy_lands_byte_for_byte_in_the_folder_marked_sent(
        dovecot: DovecotServer) -> None:
    dovecot.create_folder("Archive")
    connection = connection_to(dovecot)
    await connection.open()
    try:
        folder = await sent.find_sent(connection, None)
        assert folder == "Sent"
        await sent.append(connection, folder, RAW, datetime(2026, 11, 23, 15, tzinfo=UTC))
        assert await sent.holds(connection, folder, ["<abc123@example.com>",
                                                     "<other@example.com>"]) == {
            "<abc123@example.com>"}
        assert await sent.holds(connection, "Archive", ["<abc123@example.com>"]) == set()
    finally:
        await connection.close(polite=True)
    with dovecot.client() as imap:
        imap.select("Sent", readonly=True)
        _, data = imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
    assert data[0][1] == RAW
    assert b"\\Seen" in data[0][0]


async def test_a_named_sent_folder_wins(dovecot: DovecotServer) -> None:
    dovecot.create_folder("Outbox")
    connection = connection_to(dovecot)
    await connection.open()
    try:
        folder = await sent.find_sent(connection, "Outbox")
        assert folder == "Outbox"
        await sent.append(connection, folder, RAW, datetime(2026, 11, 23, 15, tzinfo=UTC))
        assert await sent.holds(connection, "Sent", ["<abc123@example.com>"]) == set()
        assert await sent.holds(connection, folder, ["<abc123@example.com>"]) == {
            "<abc123@example.com>"}
    finally:
        await connection.close(polite=True)


def test_list_lines_are_read_with_quoted_and_literal_names() -> None:
    lines: list[bytes | bytearray] = [
        b'(\\HasNoChildren \\Sent) "/" "Sent Items"', b'(\\Drafts) "." Drafts',
        b'(\\Sent) "/" {4}', bytearray(b"Sent"), b"LIST completed"]
    assert sent.parse_list(lines) == [
        (frozenset({"\\hasnochildren", "\\sent"}), "Sent Items"),
        (frozenset({"\\drafts"}), "Drafts"), (frozenset({"\\sent"}), "Sent")]
