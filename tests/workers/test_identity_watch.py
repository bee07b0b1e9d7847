"""Inbound mail finds a prospect in any spelling, through `sequencer run` and the real
watcher on a Maildir and on Dovecot (issue 6, RELIABILITY I1, I2)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from tests.inboxes import watched_workdir
from tests.invariants import check_invariants
from tests.notices import unsubscribe
from tests.workdir import prospects_csv, terminate, wait_for_watcher, wait_until


def new_thread(sender: str, subject: str, body: str, extra: str = "") -> bytes:
    """A message that refers to none of ours: only its From says who it is."""
    return (f"From: Someone <{sender}>\r\nTo: Dana Reyes <dana@example.com>\r\n"
            f"Subject: {subject}\r\nDate: {format_datetime(datetime.now(UTC))}\r\n"
            f"Message-ID: <new-{time.time_ns()}@elsewhere.example>\r\n{extra}"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()


def test_a_new_thread_reply_from_another_spelling_halts_mixed_case_and_idn_prospects(
        tmp_path: Path, smtp_server: Any, inbox_kind: tuple[str, Any]) -> None:
    kind, dovecot = inbox_kind
    box = watched_workdir(kind, tmp_path, smtp_server.port, dovecot, wait2="6s")
    wd = box.wd
    wd.write("sequences/other.yaml", "name: other\nmailbox: sales\nsteps:\n"
             "  - {name: a, template: reminder, wait: 1d}\n")
    wd.cli("enroll", "three", str(prospects_csv(
        wd, ["Ann@X.com", "bob@bücher.de", "carl@example.com", "Eva@Straße.de", "Zoe@X.com"])),
        check=True)
    proc = wd.start("run")
    try:
        first = smtp_server.wait_for(5, timeout=20)
        assert sorted(d.rcpt_tos[0] for d in first) == [
            "Ann@x.com", "Eva@xn--strae-oqa.de", "Zoe@x.com", "bob@xn--bcher-kva.de",
            "carl@example.com"], "IDN domains as IDNA 2008 A-labels"
        eva = next(d for d in first if d.rcpt_tos[0].startswith("Eva"))
        wait_for_watcher(wd)
        box.deliver(new_thread("ann@x.com", "A question", "Can we talk on Thursday?"))
        box.deliver(new_thread("BOB@XN--BCHER-KVA.DE", "Hallo", "Gerne, rufen Sie mich an."))
        box.deliver(unsubscribe("EVA@XN--STRAE-OQA.DE", in_reply_to=eva.message["Message-ID"]))
        box.deliver(unsubscribe("zoe@x.com"))  # From only: halts, suppresses nobody
        wait_until(lambda: {s["email"]: s["state"] for s in wd.status()} == {
            "Ann@x.com": "replied", "bob@bücher.de": "replied", "carl@example.com": "active",
            "Eva@straße.de": "unsubscribed", "Zoe@x.com": "unsubscribed"},
            20, "all four found from another spelling")
        smtp_server.wait_for(6, timeout=20)  # carl's reminder: the sequence went on for him
        time.sleep(1)
    finally:
        assert terminate(proc) == 0
    to = [d.rcpt_tos[0].lower() for d in smtp_server.deliveries]
    for person in ("ann@x.com", "bob@xn--bcher-kva.de", "eva@xn--strae-oqa.de", "zoe@x.com"):
        assert to.count(person) == 1, person
    assert "matches no enrollment" not in wd.log()
    again = wd.cli("enroll", "other", str(prospects_csv(wd, ["eva@STRASSE.de", "eva@straße.DE",
                                                             "ZOE@x.com"], "again.csv")),
                   check=True)
    assert "enrolled 2, rejected 1" in again.stdout, "strasse.de is another domain"
    assert "again.csv:3: rejected eva@straße.de: suppressed" in again.stderr
    check_invariants(smtp_server.deliveries, f"sqlite:///{wd.path / 'sequencer.db'}")
