"""The IMAP watcher against a real Dovecot on loopback (RELIABILITY.md W1-W6)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import replace
from typing import Any

import pytest

from sequencer.mail.imap.connection import ImapAccount
from sequencer.mail.imap.protocol import parse_fetch, uid_set
from sequencer.mail.imap.watcher import ImapWatcher, WatcherState, plan_batches
from sequencer.mail.watching import TRUNCATED_BODY_BYTES, Cursor
from tests.cursors import MemoryCursorStore
from tests.fixtures.dovecot import DovecotServer
from tests.mail.recording import Recorder, message, until, watching
from tests.mail.tcpstall import stalling_proxy

FAST: dict[str, Any] = {"timeout_s": 2.0, "backoff_base_s": 0.1, "backoff_max_s": 0.5}


@pytest.fixture
def account(dovecot: DovecotServer) -> ImapAccount:
    return ImapAccount(
        host=dovecot.host,
        port=dovecot.port,
        username=dovecot.username,
        password=dovecot.password,
        tls="none",
    )


def watcher_for(
    account: ImapAccount, recorder: Recorder, cursors: MemoryCursorStore | None = None, **kw: Any
) -> ImapWatcher:
    options = {**FAST, **kw}
    return ImapWatcher("sales", account, cursors or MemoryCursorStore(), recorder, **options)


async def idling(watcher: ImapWatcher) -> None:
    await until(lambda: watcher.state is WatcherState.IDLE, 10, "the watcher to enter IDLE")


def reconnects(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "reconnecting" in r.getMessage()]


# --- W1 ---------------------------------------------------------------------------------


async def test_reply_appended_during_idle_is_handed_over_within_a_second_and_a_half(
    dovecot: DovecotServer, account: ImapAccount
) -> None:
    recorder = Recorder()
    watcher = watcher_for(account, recorder)
    async with watching(watcher):
        await idling(watcher)
        appended = time.monotonic()
        await asyncio.to_thread(dovecot.append, message(1))
        [inbound] = await recorder.wait_for(1, timeout=5)
        latency = recorder.arrived[0] - appended
    assert latency < 1.5, f"handed over after {latency:.2f}s"
    assert inbound.uid == 1
    assert inbound.raw == message(1)
    assert not inbound.truncated


async def test_watching_never_marks_a_message_seen(
    dovecot: DovecotServer, account: ImapAccount
) -> None:
    dovecot.append(message(1))
    recorder = Recorder()
    async with watching(watcher_for(account, recorder)):
        await recorder.wait_for(1, timeout=5)
    with dovecot.client() as imap:
        imap.select("INBOX")
        _, data = imap.uid("FETCH", "1", "(FLAGS)")
    assert b"\\Seen" not in data[0]


# --- W2 ---------------------------------------------------------------------------------


def deliver_to_maildir(dovecot: DovecotServer, raw: bytes, name: str) -> None:
    """Deliver like an MDA would while the IMAP server is down: tmp/ then rename to new/."""
    tmp = dovecot.maildir / "tmp" / name
    tmp.write_bytes(raw)
    owner = dovecot.maildir.stat()
    os.chown(tmp, owner.st_uid, owner.st_gid)
    tmp.rename(dovecot.maildir / "new" / name)


async def test_reply_that_arrives_while_dovecot_is_down_is_found_after_it_restarts(
    dovecot: DovecotServer, account: ImapAccount, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sequencer.mail.imap.watcher")
    dovecot.append(message(1))
    recorder = Recorder()
    watcher = watcher_for(account, recorder)
    async with watching(watcher):
        await recorder.wait_for(1, timeout=5)
        await idling(watcher)
        dovecot.kill()
        await until(lambda: watcher.state is not WatcherState.IDLE, 5, "the drop to be seen")
        deliver_to_maildir(dovecot, message(2), "1700000000.M1P1.test")
        await asyncio.to_thread(dovecot.restart)
        await recorder.wait_for(2, timeout=10)
    assert recorder.subjects == ["reply 1", "reply 2"]
    assert [inbound.uid for inbound in recorder.inbound] == [1, 2]
    assert reconnects(caplog), "the drop was never logged"


# --- W3 ---------------------------------------------------------------------------------


async def test_half_open_connection_is_detected_by_the_reidle_timeout_and_recovered(
    dovecot: DovecotServer, account: ImapAccount, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sequencer.mail.imap.watcher")
    recorder = Recorder()
    async with stalling_proxy(dovecot.host, dovecot.port) as proxy:
        via_proxy = replace(account, port=proxy.port)
        watcher = watcher_for(via_proxy, recorder, idle_s=1.0, timeout_s=0.5)
        async with watching(watcher):
            await idling(watcher)
            proxy.stall()
            await asyncio.to_thread(dovecot.append, message(1))
            [inbound] = await recorder.wait_for(1, timeout=8)
        assert proxy.accepted >= 2
    assert inbound.raw == message(1)
    assert any("TimeoutError" in line for line in reconnects(caplog))


# --- W4 ---------------------------------------------------------------------------------


async def test_changed_uidvalidity_resets_the_cursor_and_delivers_every_new_message(
    dovecot: DovecotServer, account: ImapAccount, caplog: pytest.LogCaptureFixture
) -> None:
    dovecot.append_many([message(1), message(2)])
    uidvalidity = dovecot.uidvalidity()
    cursors = MemoryCursorStore()
    cursors.save("sales", Cursor(uidvalidity=uidvalidity - 1, last_uid=1000))
    recorder = Recorder()
    async with watching(watcher_for(account, recorder, cursors)):
        await recorder.wait_for(2, timeout=5)
    assert recorder.subjects == ["reply 1", "reply 2"]
    assert cursors.load("sales") == Cursor(uidvalidity=uidvalidity, last_uid=2)
    assert any("UIDVALIDITY changed" in r.getMessage() for r in caplog.records)


async def test_recreated_inbox_delivers_its_new_messages_and_none_twice(
    dovecot: DovecotServer, account: ImapAccount
) -> None:
    dovecot.append_many([message(1), message(2), message(3)])
    cursors = MemoryCursorStore()
    recorder = Recorder()
    watcher = watcher_for(account, recorder, cursors)
    async with watching(watcher):
        await recorder.wait_for(3, timeout=5)
        await idling(watcher)
        new_uidvalidity = await asyncio.to_thread(dovecot.recreate_mailbox)
        await asyncio.to_thread(dovecot.append_many, [message(4), message(5)])
        await recorder.wait_for(5, timeout=10)
    assert recorder.subjects == [f"reply {n}" for n in range(1, 6)]
    assert [inbound.uid for inbound in recorder.inbound] == [1, 2, 3, 1, 2]
    assert cursors.load("sales") == Cursor(uidvalidity=new_uidvalidity, last_uid=2)


async def test_folder_deleted_and_created_again_under_a_live_watcher_is_read_again(
    dovecot: DovecotServer, account: ImapAccount
) -> None:
    dovecot.create_folder("Replies")
    dovecot.append(message(1), folder="Replies")
    cursors = MemoryCursorStore()
    recorder = Recorder()
    watcher = watcher_for(replace(account, folder="Replies"), recorder, cursors, idle_s=1.0)
    async with watching(watcher):
        await recorder.wait_for(1, timeout=5)
        await idling(watcher)
        new_uidvalidity = await asyncio.to_thread(dovecot.recreate_mailbox, "Replies")
        await asyncio.to_thread(dovecot.append, message(2), "Replies")
        await recorder.wait_for(2, timeout=10)
    assert recorder.subjects == ["reply 1", "reply 2"]
    assert cursors.load("sales") == Cursor(uidvalidity=new_uidvalidity, last_uid=1)


# --- W5 ---------------------------------------------------------------------------------


async def test_fifteen_hundred_waiting_messages_are_all_handed_over_in_order_on_one_connection(
    dovecot: DovecotServer, account: ImapAccount, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    dovecot.append_many([message(n) for n in range(1, 1501)])
    recorder = Recorder()
    async with watching(watcher_for(account, recorder, timeout_s=10.0)):
        await recorder.wait_for(1500, timeout=60)
    assert [inbound.uid for inbound in recorder.inbound] == list(range(1, 1501))
    assert recorder.subjects[-1] == "reply 1500"
    assert reconnects(caplog) == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- W6 and hostile handlers --------------------------------------------------------------


async def test_twenty_megabyte_message_is_truncated_and_the_next_one_still_arrives(
    dovecot: DovecotServer, account: ImapAccount
) -> None:
    huge = message(2, body=b"x" * 78 + b"\r\n") + b"y" * (20 * 1024 * 1024) + b"\r\n"
    assert len(huge) > 20 * 1024 * 1024
    dovecot.append_many([message(1), huge, message(3)])
    recorder = Recorder()
    async with watching(watcher_for(account, recorder, timeout_s=10.0)):
        first, big, last = await recorder.wait_for(3, timeout=30)
    assert (first.truncated, big.truncated, last.truncated) == (False, True, False)
    header = message(2, body=b"")
    assert big.raw.startswith(header)
    assert len(big.raw) == len(header) + TRUNCATED_BODY_BYTES
    assert last.raw == message(3)


async def test_handler_that_raises_on_one_message_does_not_stop_the_next(
    dovecot: DovecotServer, account: ImapAccount, caplog: pytest.LogCaptureFixture
) -> None:
    dovecot.append_many([message(1), message(2), message(3)])
    recorder = Recorder(poison=frozenset({"reply 2"}))
    cursors = MemoryCursorStore()
    async with watching(watcher_for(account, recorder, cursors)):
        await recorder.wait_for(3, timeout=5)
    assert recorder.subjects == ["reply 1", "reply 2", "reply 3"]
    assert cursors.load("sales").last_uid == 3
    [failure] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "UID 2" in failure.getMessage() and failure.exc_info is not None


async def test_second_run_with_the_same_cursor_store_hands_over_only_new_messages(
    dovecot: DovecotServer, account: ImapAccount
) -> None:
    dovecot.append_many([message(1), message(2)])
    cursors = MemoryCursorStore()
    first = Recorder()
    async with watching(watcher_for(account, first, cursors)):
        await first.wait_for(2, timeout=5)
    dovecot.append(message(3))
    second = Recorder()
    watcher = watcher_for(account, second, cursors)
    async with watching(watcher):
        await second.wait_for(1, timeout=5)
        await idling(watcher)
    assert second.subjects == ["reply 3"]
    assert cursors.load("sales") == Cursor(uidvalidity=dovecot.uidvalidity(), last_uid=3)


async def test_refused_login_is_logged_without_the_password_and_retried(
    dovecot: DovecotServer, account: ImapAccount, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = replace(account, password='no"t-' + account.password)
    watcher = watcher_for(wrong, Recorder(), timeout_s=5.0)  # Dovecot delays a refusal 2 s
    async with watching(watcher):
        await until(lambda: len(reconnects(caplog)) >= 1, 10, "the refused login")
        await until(lambda: watcher.state is WatcherState.CONNECTING, 5, "a retry")
    assert "login refused for sales@example.test" in reconnects(caplog)[0]
    assert any(r.name.startswith("aioimaplib") for r in caplog.records), "debug log was off"
    assert account.password not in caplog.text
    assert account.password not in repr(watcher) + repr(wrong)


async def test_stop_returns_promptly_while_idling(account: ImapAccount) -> None:
    watcher = watcher_for(account, Recorder(), idle_s=240.0)
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    await idling(watcher)
    stop.set()
    await asyncio.wait_for(task, 2)
    assert watcher.state is WatcherState.STOPPED


# --- pure helpers -----------------------------------------------------------------------


def test_uid_set_compresses_runs() -> None:
    assert uid_set([1, 2, 3, 7, 9, 10]) == "1:3,7,9:10"
    assert uid_set([5]) == "5"


def test_oversized_messages_get_their_own_truncated_batch_and_batches_respect_the_budget() -> None:
    sizes = {1: 40, 2: 40, 3: 500, 4: 70, 6: 10}
    batches = list(plan_batches([1, 2, 3, 4, 5, 6], sizes, max_bytes=100))
    assert batches == [([1, 2], False), ([3], True), ([4, 6], False)]


def test_fetch_response_is_grouped_by_uid_with_unsolicited_updates_left_out() -> None:
    lines: list[bytes | bytearray] = [
        b"1 FETCH (UID 10 BODY[HEADER]<0> {4}",
        bytearray(b"H: x"),
        b" BODY[TEXT]<0> {2}",
        bytearray(b"hi"),
        b")",
        b"2 FETCH (FLAGS (\\Seen))",
        b"3 FETCH (UID 12 RFC822.SIZE 99)",
        b"Fetch completed (0.001 + 0.000 secs).",
    ]
    found = parse_fetch(lines)
    assert sorted(found) == [10, 12]
    assert found[10].sections == {b"BODY[HEADER]": b"H: x", b"BODY[TEXT]": b"hi"}
    assert found[12].size == 99


def test_a_chunk_too_big_for_aioimaplib_is_refused_up_front(account: ImapAccount) -> None:
    with pytest.raises(ValueError, match="at most 250"):
        ImapWatcher("sales", account, MemoryCursorStore(), Recorder(), chunk=1000)
