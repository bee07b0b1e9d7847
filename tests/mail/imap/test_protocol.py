"""The aioimaplib subclass: each workaround, against a real Dovecot, pinned to the version."""

from __future__ import annotations

import asyncio
import logging
import socket
from importlib.metadata import version

import pytest

from sequencer.mail.imap.protocol import AIOIMAPLIB_VERSION, Client
from tests.fixtures.dovecot import DovecotServer
from tests.mail.recording import message


def client_for(host: str, port: int, seen: list[bytes]) -> Client:
    return Client(host=host, port=port, timeout=5.0, conn_lost_cb=lambda exc: None,
                  ssl_context=None, on_untagged=seen.append)


def test_the_workarounds_were_checked_against_the_installed_aioimaplib() -> None:
    assert version("aioimaplib") == AIOIMAPLIB_VERSION, (
        "aioimaplib changed: re-check every workaround in sequencer/mail/imap/protocol.py "
        "(it touches private attributes), then update AIOIMAPLIB_VERSION")


async def test_every_untagged_line_is_seen_before_aioimaplib_routes_it(
        dovecot: DovecotServer) -> None:
    dovecot.append(message(1))
    dovecot.append(message(2))
    seen: list[bytes] = []
    client = client_for(dovecot.host, dovecot.port, seen)
    try:
        await client.wait_hello_from_server()
        assert (await client.login(dovecot.username, dovecot.password)).result == "OK"
        assert (await client.select("INBOX")).result == "OK"
    finally:
        client.abort()
    assert b"* 2 EXISTS" in seen


async def test_abort_while_idling_cancels_the_idle_timer_and_every_task(
        dovecot: DovecotServer) -> None:
    client = client_for(dovecot.host, dovecot.port, [])
    await client.wait_hello_from_server()
    await client.login(dovecot.username, dovecot.password)
    await client.select("INBOX")
    idle = await client.idle_start(timeout=60)
    timer = client._idle_waiter
    assert timer is not None and not timer.cancelled()
    client.abort()
    await asyncio.sleep(0)  # let the cancellations run
    assert timer.cancelled()
    assert idle.done()
    assert all(task.done() for task in [*client.tasks, *client.protocol.tasks])


async def test_abort_before_the_connection_is_up_cancels_the_connect_task() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens, never greets
        client = client_for("127.0.0.1", silent.getsockname()[1], [])
        client.abort()
        await asyncio.sleep(0)
        assert client._client_task.cancelled()


async def test_login_lines_never_reach_a_log(dovecot: DovecotServer,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="aioimaplib")
    client = client_for(dovecot.host, dovecot.port, [])
    try:
        await client.wait_hello_from_server()
        await client.login(dovecot.username, dovecot.password)
        await client.select("INBOX")
    finally:
        client.abort()
    assert any("SELECT" in r.getMessage() for r in caplog.records), "debug log was off"
    assert dovecot.password not in caplog.text
    assert not any(" LOGIN " in r.getMessage() for r in caplog.records)

