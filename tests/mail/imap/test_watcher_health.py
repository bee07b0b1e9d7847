"""What the IMAP watcher knows about its own health, against a real Dovecot: when the server
last answered, how far the cursor is behind, and a silent server seen as silent."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from sequencer.mail.imap.connection import ImapAccount
from sequencer.mail.imap.watcher import ImapWatcher
from sequencer.mail.watching import HealthState, Inbound
from tests.cursors import MemoryCursorStore
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.proxy import TcpProxy
from tests.mail.imap.test_watcher import FAST, account, idling  # noqa: F401  (fixture)
from tests.mail.recording import message, until, watching


class Gate:
    """A handler that takes one message at a time, when the test lets it."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.open = asyncio.Event()

    async def __call__(self, inbound: Inbound) -> None:
        self.seen.append(inbound.uid)
        await self.open.wait()


async def test_cursor_lag_counts_the_messages_not_handled_yet_and_falls_to_zero(
    dovecot: DovecotServer, account: ImapAccount  # noqa: F811
) -> None:
    dovecot.append_many([message(1), message(2), message(3)])
    gate = Gate()
    before = datetime.now(UTC)
    watcher = ImapWatcher("sales", account, MemoryCursorStore(), gate, **FAST)
    assert watcher.health().state is HealthState.CONNECTING
    assert watcher.health().cursor_lag is None
    async with watching(watcher):
        await until(lambda: gate.seen == [1], 10, "the first message")
        health = watcher.health()
        assert health.state is HealthState.WATCHING
        assert health.cursor_lag == 3  # UIDNEXT 4 - 1, nothing handled yet
        gate.open.set()
        await idling(watcher)
        health = watcher.health()
    assert health.cursor_lag == 0
    assert health.last_error is None
    assert health.last_answer_at is not None
    assert before <= health.last_answer_at <= datetime.now(UTC)
    assert watcher.health().state is HealthState.STOPPED


async def test_each_idle_refresh_is_an_answer(
    dovecot: DovecotServer, account: ImapAccount  # noqa: F811
) -> None:
    watcher = ImapWatcher("sales", account, MemoryCursorStore(), Gate(), **FAST, idle_s=0.5)
    async with watching(watcher):
        await idling(watcher)
        first = watcher.health().last_answer_at
        assert first is not None
        await until(lambda: (watcher.health().last_answer_at or first) > first
                    + timedelta(seconds=0.4), 5, "a later answer")
        assert watcher.health().state is HealthState.WATCHING


async def test_a_silent_server_is_silent_within_idle_plus_timeout_then_recovers(
    dovecot: DovecotServer, account: ImapAccount, tcp_proxy: Callable[[str, int], TcpProxy],  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sequencer.mail.imap.watcher")
    proxy: TcpProxy = tcp_proxy(dovecot.host, dovecot.port)
    via = ImapAccount(host=proxy.host, port=proxy.port, username=account.username,
                      password=account.password, tls="none")
    idle_s, timeout_s = 1.0, 1.0
    watcher = ImapWatcher("sales", via, MemoryCursorStore(), Gate(), **{
        **FAST, "idle_s": idle_s, "timeout_s": timeout_s})
    async with watching(watcher):
        await idling(watcher)
        stalled = time.monotonic()
        proxy.stall(new_connections=True)
        await until(lambda: watcher.health().state is HealthState.SILENT,
                    idle_s + timeout_s + 2, "silent")
        took = time.monotonic() - stalled
        health = watcher.health()
        assert health.last_error is not None and "no answer to" in health.last_error
        assert health.last_error_at is not None
        await asyncio.sleep(timeout_s * 2)  # reconnecting into the stall: silent still
        assert watcher.health().state is HealthState.SILENT
        proxy.resume()
        await until(lambda: watcher.health().state is HealthState.WATCHING, 10, "watching")
        kept = watcher.health().last_error  # the last error is kept after the recovery
        assert kept is not None and kept.startswith("TimeoutError: no answer to")
    assert took <= idle_s + timeout_s + 1.0, took
    warned = [r for r in caplog.records if r.levelno == logging.WARNING
              and "went silent" in r.getMessage()]
    assert warned and all(r.getMessage().startswith("imap sales:") for r in warned)
