"""`sequencer status --mailboxes` against the real processes (issue 9, item 6): `sequencer
run` watching a real Dovecot reports its health in the database, and separate `status
--mailboxes --json` calls read it. Healthy: the last answer, the cursor lag and today's
sends against daily_limit (checked against the aiosmtpd ledger). A server gone silent behind
a proxy that stops forwarding (RELIABILITY W3) is unhealthy within imap_idle + imap_timeout,
with its error, and watched again once the proxy forwards; a watcher that is gone reads as
stopped or stale, never as watching."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.proxy import TcpProxy
from tests.fixtures.smtp import SmtpServer
from tests.workdir import (
    Workdir,
    make_workdir,
    prospects_csv,
    terminate,
    wait_for_watcher,
    wait_until,
)
from tests.workers.test_watch import reply_to


def health_workdir(tmp_path: Path, smtp_port: int, imap_port: int, dovecot: DovecotServer,
                   *, idle: str = "30s", timeout: str = "5s", wait2: str = "1h") -> Workdir:
    wd = make_workdir(
        tmp_path, smtp_port, wait2=wait2, wait3="1h",
        extra=f"imap_idle: {idle}\nimap_timeout: {timeout}\n",
        mailbox_extra=("    daily_limit: 40\n"
                       f"    imap: {{host: 127.0.0.1, port: {imap_port}, username: "
                       f"{dovecot.username}, password_env: IMAP_PW, tls: none}}\n"))
    wd.env["IMAP_PW"] = dovecot.password
    return wd


def mailboxes(wd: Workdir, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    result = wd.cli("status", "--mailboxes", "--json", check=True, extra_env=extra_env)
    rows = json.loads(result.stdout)
    return {row["mailbox"]: row for row in rows}


def sales_when(wd: Workdir, check: Any, timeout: float, what: str) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    def ok() -> bool:
        seen.append(mailboxes(wd)["sales"])
        return bool(check(seen[-1]))

    try:
        wait_until(ok, timeout, what, interval=0.2)
    except AssertionError as err:
        raise AssertionError(f"{err}; last seen: {seen[-1] if seen else None}") from None
    return seen[-1]


def at(text: str | None) -> datetime:
    assert text is not None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_healthy_watcher_shows_its_last_answer_cursor_lag_and_sends_today(
        tmp_path: Path, smtp_server: SmtpServer, dovecot: DovecotServer) -> None:
    wd = health_workdir(tmp_path, smtp_server.port, dovecot.port, dovecot)
    before = mailboxes(wd)["sales"]
    assert (before["state"], before["healthy"]) == ("no_report", False)
    assert before["detail"] == "no report yet: watcher not running?"
    dovecot.append_many([b"From: news@example.net\r\nSubject: hello\r\n\r\nnot for us\r\n"] * 3)
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com", "bo@example.com"])),
           check=True)
    proc = wd.start("run")
    try:
        smtp_server.wait_for(2, timeout=15)
        wait_for_watcher(wd)
        row = sales_when(wd, lambda r: r["state"] == "watching" and r["cursor_lag"] == 0
                         and r["sends_today"] == 2, 30, "a healthy report")
        text = wd.cli("status", "--mailboxes", check=True).stdout
    finally:
        assert terminate(proc) == 0
    assert row["healthy"] is True and row["detail"] is None and row["last_error"] is None
    assert "watched by another process" not in wd.log(), "the watcher waited for a lease"
    assert len(smtp_server.deliveries) == row["sends_today"] == 2
    assert row["daily_limit"] == 40
    assert datetime.now(UTC) - at(row["last_answer_at"]) < timedelta(seconds=60)
    print(text)
    header, line = text.splitlines()
    assert header.split() == ["mailbox", "state", "last", "answer", "cursor", "lag", "sent",
                              "today", "detail"]
    assert line.split()[:2] == ["sales", "watching"] and "2/40" in line.split()
    stopped = mailboxes(wd)["sales"]  # SIGTERM: the watcher's last report says so
    assert (stopped["state"], stopped["healthy"]) == ("stopped", False)
    assert stopped["detail"] == "the watcher was stopped"


def test_a_watcher_killed_without_a_word_reads_as_stale_not_watching(
        tmp_path: Path, smtp_server: SmtpServer, dovecot: DovecotServer) -> None:
    wd = health_workdir(tmp_path, smtp_server.port, dovecot.port, dovecot)
    proc = wd.start("run")
    try:
        wait_for_watcher(wd)
        sales_when(wd, lambda r: r["state"] == "watching", 30, "watching")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    later = (datetime.now(UTC) + timedelta(minutes=3)).isoformat()
    row = mailboxes(wd, {"SEQUENCER_TEST_CLOCK": f"{later}@{time.time()}x1"})["sales"]
    assert (row["state"], row["healthy"], row["reported_state"]) == ("stale", False, "watching")
    assert row["detail"] == "no report for 3m: watcher not running?"


def test_a_silent_server_shows_unhealthy_within_idle_plus_timeout_and_recovers(
        tmp_path: Path, smtp_server: SmtpServer, dovecot: DovecotServer,
        tcp_proxy: Callable[[str, int], TcpProxy]) -> None:
    proxy: TcpProxy = tcp_proxy(dovecot.host, dovecot.port)
    idle_s, timeout_s = 2.0, 2.0
    wd = health_workdir(tmp_path, smtp_server.port, proxy.port, dovecot,
                        idle="2s", timeout="2s", wait2="5m")
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com"])), check=True)
    proc = wd.start("run")
    try:
        (first,) = smtp_server.wait_for(1, timeout=15)
        wait_for_watcher(wd)
        sales_when(wd, lambda r: r["state"] == "watching", 30, "watching")
        stalled = datetime.now(UTC)
        proxy.stall(new_connections=True)
        silent = sales_when(wd, lambda r: r["state"] == "silent", 30, "silent")
        dovecot.append(reply_to(first))  # arrives while nothing gets through
        time.sleep(timeout_s)
        still = mailboxes(wd)["sales"]
        proxy.resume()
        back = sales_when(wd, lambda r: r["state"] == "watching", 30, "watching again")
        wait_until(lambda: wd.status()[0]["state"] == "replied", 15, "ann replied")
    finally:
        assert terminate(proc) == 0
    took = (at(silent["since"]) - stalled).total_seconds()
    assert took <= idle_s + timeout_s + 1.0, f"silent after {took:.1f}s"
    print(f"silent server seen as silent {took:.2f}s after the stall "
          f"(imap_idle {idle_s:g}s + imap_timeout {timeout_s:g}s)")
    assert silent["healthy"] is False
    assert silent["last_error"].startswith("TimeoutError: no answer to")
    assert silent["detail"] == silent["last_error"]
    assert (still["state"], still["healthy"]) == ("silent", False)
    assert back["healthy"] is True and back["last_error"] is not None  # kept for a look
    assert at(back["last_answer_at"]) > at(silent["last_answer_at"] or silent["since"])
    assert proxy.accepted >= 2
    warned = [line for line in wd.log().splitlines() if "went silent" in line]
    assert warned and all("imap sales:" in line for line in warned)
    assert [d.rcpt_tos for d in smtp_server.deliveries] == [["ann@example.com"]]
