"""The Maildir watcher: the same contract as the IMAP watcher, on a local directory."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest

from sequencer.mail.maildir import MaildirWatcher, read_message
from sequencer.mail.watching import TRUNCATED_BODY_BYTES, Cursor, Inbound
from tests.cursors import MemoryCursorStore
from tests.mail.recording import Recorder, message, watching


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    path = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (path / sub).mkdir(parents=True)
    return path


def deliver(maildir: Path, raw: bytes, name: str, mtime: float | None = None) -> Path:
    """Deliver the way an MDA does: write into tmp/, then rename into new/."""
    tmp = maildir / "tmp" / name
    tmp.write_bytes(raw)
    if mtime is not None:
        os.utime(tmp, (mtime, mtime))
    target = maildir / "new" / name
    tmp.rename(target)
    return target


def watcher_for(
    maildir: Path, recorder: Recorder, cursors: MemoryCursorStore | None = None
) -> MaildirWatcher:
    return MaildirWatcher("demo", maildir, cursors or MemoryCursorStore(), recorder, poll_s=0.05)


async def test_message_delivered_while_watching_is_handed_over_within_a_second(
    maildir: Path,
) -> None:
    recorder = Recorder()
    async with watching(watcher_for(maildir, recorder)):
        delivered = time.monotonic()
        deliver(maildir, message(1), "1700000001.M1.host")
        [inbound] = await recorder.wait_for(1, timeout=5)
    assert recorder.arrived[0] - delivered < 1.0
    assert inbound == type(inbound)(uid=1, raw=message(1), truncated=False)


async def test_handled_message_moves_to_cur_unflagged_and_a_restart_does_not_repeat_it(
    maildir: Path,
) -> None:
    deliver(maildir, message(1), "1700000001.M1.host")
    cursors = MemoryCursorStore()
    first = Recorder()
    async with watching(watcher_for(maildir, first, cursors)):
        await first.wait_for(1, timeout=5)
    assert sorted(os.listdir(maildir / "cur")) == ["1700000001.M1.host:2,"]
    assert os.listdir(maildir / "new") == []

    deliver(maildir, message(2), "1700000002.M2.host")
    second = Recorder()
    async with watching(watcher_for(maildir, second, cursors)):
        await second.wait_for(1, timeout=5)
        await asyncio.sleep(0.2)  # several more polls: nothing else may come
    assert second.subjects == ["reply 2"]
    assert [inbound.uid for inbound in second.inbound] == [2]
    assert cursors.load("demo") == Cursor(uidvalidity=None, last_uid=2)


async def test_messages_are_handed_over_by_mtime_then_name_and_tmp_and_cur_are_left_alone(
    maildir: Path,
) -> None:
    now = time.time()
    deliver(maildir, message(3), "c.host", mtime=now - 10)
    deliver(maildir, message(2), "b.host", mtime=now - 20)
    deliver(maildir, message(1), "a.host", mtime=now - 20)
    (maildir / "tmp" / "partial.host").write_bytes(message(8))
    (maildir / "cur" / "old.host:2,S").write_bytes(message(9))
    recorder = Recorder()
    async with watching(watcher_for(maildir, recorder)):
        await recorder.wait_for(3, timeout=5)
        await asyncio.sleep(0.2)
    assert recorder.subjects == ["reply 1", "reply 2", "reply 3"]


async def test_oversized_file_is_truncated_and_the_next_one_still_arrives(maildir: Path) -> None:
    header = message(1, body=b"")
    deliver(maildir, header + b"z" * (11 * 1024 * 1024), "1.host", mtime=time.time() - 5)
    deliver(maildir, message(2), "2.host")
    recorder = Recorder()
    async with watching(watcher_for(maildir, recorder)):
        big, small = await recorder.wait_for(2, timeout=5)
    assert big.truncated and not small.truncated
    assert big.raw == header + b"z" * TRUNCATED_BODY_BYTES
    assert small.raw == message(2)


async def test_handler_that_raises_does_not_stop_the_next_message(
    maildir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = time.time()
    for n in (1, 2, 3):
        deliver(maildir, message(n), f"{n}.host", mtime=now - 10 + n)
    recorder = Recorder(poison=frozenset({"reply 2"}))
    async with watching(watcher_for(maildir, recorder)):
        await recorder.wait_for(3, timeout=5)
    assert recorder.subjects == ["reply 1", "reply 2", "reply 3"]
    [failure] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "2.host" in failure.getMessage() and failure.exc_info is not None
    assert len(os.listdir(maildir / "cur")) == 3


async def test_missing_maildir_is_created_and_watched(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "Maildir"
    recorder = Recorder()
    async with watching(watcher_for(path, recorder)):
        while not (path / "new").is_dir():
            await asyncio.sleep(0.01)
        deliver(path, message(1), "1.host")
        await recorder.wait_for(1, timeout=5)
    assert recorder.subjects == ["reply 1"]


def test_header_without_a_blank_line_is_cut_at_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "m"
    path.write_bytes(b"X-Long: " + b"a" * 100)
    assert read_message(path, max_bytes=50) == ((b"X-Long: " + b"a" * 100)[:50], True)
    assert read_message(path, max_bytes=500) == (b"X-Long: " + b"a" * 100, False)


async def test_a_message_whose_handling_must_be_retried_stays_and_is_handed_over_again(
    maildir: Path,
) -> None:
    from sequencer.errors import RetryLater

    seen: list[int] = []

    async def flaky(inbound: Inbound) -> None:
        seen.append(inbound.uid)
        if len(seen) == 1:
            raise RetryLater("database is down")

    watcher = MaildirWatcher("demo", maildir, MemoryCursorStore(), flaky, poll_s=0.05)
    path = deliver(maildir, message(1), "1700000001.M1.host")
    async with watching(watcher):
        for _ in range(100):
            if len(seen) >= 2:
                break
            await asyncio.sleep(0.05)
    assert len(seen) == 2, "handed over again after the passing failure"
    assert not path.exists() and len(list((maildir / "cur").iterdir())) == 1
