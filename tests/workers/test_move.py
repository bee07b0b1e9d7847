"""One active sequence per prospect, and `enroll --move`, through the CLI while `sequencer
run` is sending (issue 8, item 5)."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.smtp import SmtpServer
from tests.invariants import check_invariants
from tests.workdir import make_workdir, prospects_csv, terminate, wait_for_watcher, wait_until

AFTER = """\
name: after
mailbox: sales
steps:
  - {name: welcome, template: new_info, wait: 0s}
  - {name: later, template: reminder, wait: 1h}
"""


def test_enroll_move_ends_the_current_sequence_as_stopped_moved_and_starts_the_new_one(
        tmp_path: Path, smtp_server: SmtpServer, dovecot: DovecotServer) -> None:
    # The mailbox is watched over IMAP (Dovecot) while the move happens, as a user's would be.
    wd = make_workdir(
        tmp_path, smtp_server.port, wait2="20s", wait3="1h",
        extra="imap_idle: 30s\nimap_timeout: 5s\n",
        mailbox_extra=(f"    imap: {{host: 127.0.0.1, port: {dovecot.port}, username: "
                       f"{dovecot.username}, password_env: IMAP_PW, tls: none}}\n"))
    wd.env["IMAP_PW"] = dovecot.password
    wd.write("sequences/after.yaml", AFTER)
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com", "bo@example.com"])),
           check=True)
    proc = wd.start("run")
    try:
        first = smtp_server.wait_for(2, timeout=20)
        sent_at = min(d.received_at for d in first)  # ann's reminder is due 20 s after
        wait_for_watcher(wd)
        csv = prospects_csv(wd, ["ann@example.com", "new@example.com"], "customers.csv")

        refused = wd.cli("enroll", "after", str(csv), check=True)
        assert refused.stderr.splitlines() == [
            f"{csv}:2: rejected ann@example.com: active in sequence three; use --move"]
        assert "enrolled 1, rejected 1 (2 rows) into after" in refused.stdout

        moved = wd.cli("enroll", "--move", "after", str(csv), check=True)
        moved_at = time.time()
        assert "enrolled 1 (moved 1 from other sequences), rejected 1" in moved.stdout
        assert f"{csv}:3: rejected new@example.com: already enrolled in after" in moved.stderr

        wait_until(lambda: any(d.rcpt_tos == ["ann@example.com"]
                               and d.message["Subject"].startswith("New for")
                               for d in smtp_server.deliveries), 15, "ann's first `after` step")
        # bo, still in `three`, gets its reminder 20 s after the thank-you; ann does not.
        wait_until(lambda: any(d.rcpt_tos == ["bo@example.com"] and
                               d.message["Subject"].startswith("Re: ")
                               for d in smtp_server.deliveries), 20, "bo's reminder")
        time.sleep(1.0)  # ann's reminder would have been due with bo's
    finally:
        assert terminate(proc) == 0, wd.log()
    assert moved_at - sent_at < 20, "the move was done before ann's reminder was due"
    assert first[0].message["Subject"].startswith("Thanks")
    to_ann = [d.message["Subject"] for d in smtp_server.deliveries
              if d.rcpt_tos == ["ann@example.com"]]
    assert to_ann == ["Thanks, Ann", "New for Co0"], "three's reminder never went to ann"
    status = {(s["sequence"], s["email"]): s for s in wd.status()}
    assert status[("three", "ann@example.com")]["state"] == "stopped"
    assert status[("three", "ann@example.com")]["next_due"] is None
    assert status[("three", "bo@example.com")]["state"] == "active"
    assert status[("after", "ann@example.com")]["state"] == "active"
    assert status[("after", "ann@example.com")]["steps_sent"] == 1
    assert status[("after", "new@example.com")]["state"] == "active"
    engine = create_engine(f"sqlite:///{wd.path / 'sequencer.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "select email, sequence, detail from events where event = 'stopped'")).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [("ann@example.com", "three", "moved to after")]
    check_invariants(smtp_server.deliveries, f"sqlite:///{wd.path / 'sequencer.db'}")
