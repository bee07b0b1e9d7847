"""Sent copies and the `unknown` resolution (issue 9, "What it must show" 3), with a real
Dovecot whose Sent folder is marked ``\\Sent`` and the crash hook after the server's 250."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.smtp import SmtpServer
from tests.invariants import check_invariants
from tests.workdir import Workdir, make_workdir, prospects_csv, terminate, wait_until

THREE = """\
name: three
mailbox: sales
timezone: UTC
steps:
  - {name: thank-you, template: thank_you, wait: 0s}
  - {name: reminder, template: reminder, wait: 1s, thread: true}
  - {name: new-information, template: new_info, wait: 1s}
"""


def with_imap(tmp_path: Path, smtp_port: int, dovecot: DovecotServer, extra: str,
              sequence: str = THREE) -> Workdir:
    # watch_lease 3s: a killed process's mailbox is watched again 3 s later, not 60 s
    wd = make_workdir(tmp_path, smtp_port, sequence=sequence, lease="1s",
                      extra="watch_lease: 3s\n", mailbox_extra=(
        f"    imap: {{host: 127.0.0.1, port: {dovecot.port}, username: {dovecot.username}, "
        "password_env: IMAP_PW, tls: none}\n" + extra))
    wd.env["IMAP_PW"] = dovecot.password
    return wd


def sent_folder(dovecot: DovecotServer) -> list[bytes]:
    with dovecot.client() as imap:
        imap.select("Sent", readonly=True)
        _, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[])")
    return [item[1] for item in data if isinstance(item, tuple)]


def test_each_sent_message_is_appended_byte_for_byte_to_the_folder_marked_sent(
        tmp_path: Path, smtp_server: SmtpServer, dovecot: DovecotServer) -> None:
    wd = with_imap(tmp_path, smtp_server.port, dovecot, "")  # save_sent: auto, no preset
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com", "bo@example.org"])),
           check=True)
    proc = wd.start("run")
    try:
        smtp_server.wait_for(6, timeout=30)
        wait_until(lambda: len(sent_folder(dovecot)) == 6, 20, "six copies in Sent")
    finally:
        assert terminate(proc) == 0, wd.log()
    assert sorted(sent_folder(dovecot)) == sorted(d.raw for d in smtp_server.deliveries)
    assert "Traceback" not in wd.log(), wd.log()


def test_save_sent_never_and_a_server_that_saves_by_itself_append_nothing(
        tmp_path: Path, smtp_server: SmtpServer, dovecot: DovecotServer) -> None:
    for extra in ("    save_sent: never\n", "    saves_sent: true\n"):
        wd = with_imap(tmp_path / extra.split(":")[0].strip(), smtp_server.port, dovecot,
                       extra)
        wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com"])), check=True)
        proc = wd.start("run")
        try:
            smtp_server.wait_for(3 if "never" in extra else 6, timeout=30)
            wait_until(lambda: all(s["state"] == "completed" for s in wd.status()), 10,  # noqa: B023
                       "completed")
        finally:
            assert terminate(proc) == 0, wd.log()
    assert sent_folder(dovecot) == []


def crash_after_the_250(wd: Workdir, smtp_server: SmtpServer) -> None:
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com"])), check=True)
    crashed = wd.start("run", extra_env={"SEQUENCER_TEST_CRASH_AT": "after_250"})
    assert crashed.wait(timeout=30) == -signal.SIGKILL
    assert len(smtp_server.deliveries) == 1  # delivered, and nothing recorded it


def test_an_unknown_step_found_in_sent_counts_as_sent_and_the_sequence_goes_on(
        tmp_path: Path, smtp_server: SmtpServer, dovecot: DovecotServer) -> None:
    # A server that files submitted mail in Sent by itself (as Gmail does): the test files
    # the delivered bytes there, as that server would have.
    # sent_grace 30s: Sent is looked in every 3 s (a tenth of it), so a step that becomes
    # unknown after the watcher started is found well inside the wait below.
    wd = with_imap(tmp_path, smtp_server.port, dovecot,
                   "    saves_sent: true\n    sent_grace: 30s\n")
    crash_after_the_250(wd, smtp_server)
    dovecot.append(smtp_server.deliveries[0].raw, "Sent")
    proc = wd.start("run", log="run2.log")
    try:
        # The killed process's claim and watcher leases run out first.
        smtp_server.wait_for(3, timeout=40)
        wait_until(lambda: wd.status()[0]["state"] == "completed", 20, "completed")
    finally:
        assert terminate(proc) == 0, wd.log("run2.log")
    log = wd.log("run2.log")
    assert "unknown" in log and "found in the Sent folder by its Message-ID" in log
    subjects = [d.message["Subject"] for d in smtp_server.deliveries]
    assert subjects == ["Thanks, Ann", "Re: Thanks, Ann", "New for Co0"]  # never resent
    status = wd.status()[0]
    assert status["steps_sent"] == 3 and status["flag"] is None
    counts = check_invariants(smtp_server.deliveries, f"sqlite:///{wd.path / 'sequencer.db'}")
    assert counts == {"sent": 3}


def test_an_unknown_step_missing_from_sent_stays_flagged_after_the_grace_period(
        tmp_path: Path, smtp_server: SmtpServer, dovecot: DovecotServer) -> None:
    # save_sent: always, but the crash came before the copy: Sent never gets it.
    wd = with_imap(tmp_path, smtp_server.port, dovecot,
                   "    save_sent: always\n    sent_grace: 3s\n")
    crash_after_the_250(wd, smtp_server)
    proc = wd.start("run", log="run2.log")
    try:
        wait_until(lambda: "not in Sent within 3s" in (wd.status()[0]["flag"] or ""), 30,
                   "given up on after the grace period")  # the lease, then the 3 s
    finally:
        assert terminate(proc) == 0, wd.log("run2.log")
    status = wd.status()[0]
    assert status["state"] == "paused" and status["unknown_steps"] == 1
    assert status["steps_sent"] == 0 and status["next_due"] is None
    assert "not found in Sent within 3s; left flagged" in wd.log("run2.log")
    assert len(smtp_server.deliveries) == 1 and sent_folder(dovecot) == []
    counts = check_invariants(smtp_server.deliveries, f"sqlite:///{wd.path / 'sequencer.db'}")
    assert counts == {"unknown": 1}
