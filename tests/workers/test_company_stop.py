"""Company stop (`stop_on: [company_reply]`), end to end through `sequencer run` with the
real watchers (Maildir, Dovecot) and the aiosmtpd ledger (issue 8, item 4)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.smtp import Delivery, SmtpServer
from tests.invariants import check_invariants
from tests.workdir import (
    Workdir,
    make_workdir,
    prospects_csv,
    terminate,
    wait_for_watcher,
    wait_until,
)

COMPANY_SEQUENCE = """\
name: {name}
mailbox: sales
stop_on: [{stop_on}]
steps:
  - {{name: thank-you, template: thank_you, wait: {first}}}
  - {{name: reminder, template: reminder, wait: {wait2}, thread: true}}
  - {{name: new-information, template: new_info, wait: 1h}}
"""


def sequence(name: str, *, company: bool = True, first: str = "0s", wait2: str = "8s") -> str:
    stop_on = "reply, company_reply, bounce, unsubscribe" if company else "reply, bounce"
    return COMPANY_SEQUENCE.format(name=name, stop_on=stop_on, first=first, wait2=wait2)


def mail(sender: str, *, subject: str, body: str, in_reply_to: str | None = None,
         extra_headers: str = "") -> bytes:
    thread = f"In-Reply-To: {in_reply_to}\r\nReferences: {in_reply_to}\r\n" \
        if in_reply_to else ""
    return (
        f"From: {sender.split('@')[0].title()} <{sender}>\r\n"
        "To: Dana Reyes <dana@example.com>\r\n"
        f"Subject: {subject}\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\n"
        f"Message-ID: <{time.time_ns()}.{sender.split('@')[0]}@{sender.split('@')[1]}>\r\n"
        f"{thread}{extra_headers}Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def drop_into(maildir: Path, raw: bytes) -> None:
    """Deliver the way an MDA does: write into tmp/, then rename into new/."""
    name = f"{time.time_ns()}.M1P1.test"
    (maildir / "tmp" / name).write_bytes(raw)
    (maildir / "tmp" / name).rename(maildir / "new" / name)


def message_id(raw: bytes) -> str:
    line = next(h for h in raw.decode().split("\r\n") if h.startswith("Message-ID: "))
    return line.removeprefix("Message-ID: ")


def states(wd: Workdir) -> dict[tuple[str, str], str]:
    return {(s["sequence"], s["email"]): s["state"] for s in wd.status()}


def events(wd: Workdir) -> list[dict[str, object]]:
    return [json.loads(line) for line in wd.log("events.jsonl").splitlines()
            if line.startswith("{") and '"event"' in line]


def to(smtp_server: SmtpServer, address: str) -> list[Delivery]:
    return [d for d in smtp_server.deliveries if d.rcpt_tos == [address]]


def test_a_colleagues_reply_in_our_thread_halts_the_company_in_that_sequence_only(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    maildir = tmp_path / "wd" / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    wd = make_workdir(tmp_path / "wd", smtp_server.port,
                      sequence=sequence("three", wait2="15s"),
                      mailbox_extra="    inbox: maildir:Maildir\n")
    wd.write("sequences/other.yaml", sequence("other", wait2="15s"))
    outreach = ["ann@acme.com", "bob@sales.acme.com", "cy@globex.com", "dee@gmail.com",
                "eve@gmail.com"]
    wd.cli("enroll", "three", str(prospects_csv(wd, outreach)), check=True)
    wd.cli("enroll", "other", str(prospects_csv(wd, ["carol@acme.com"], "o.csv")), check=True)
    proc = wd.start("run", "--log-format", "json", "--log-file", "events.jsonl")
    try:
        smtp_server.wait_for(6, timeout=20)
        wait_until(lambda: "maildir sales: watching" in wd.log(), 10, "the watcher")
        ann_first = to(smtp_server, "ann@acme.com")[0].message["Message-ID"]
        dee_first = to(smtp_server, "dee@gmail.com")[0].message["Message-ID"]

        # An out-of-office from someone at Acme, in Ann's thread: not a reply, halts nobody.
        drop_into(maildir, mail(
            "yan@acme.com", subject="Automatic reply: Thanks, Ann", in_reply_to=ann_first,
            extra_headers="Auto-Submitted: auto-replied\r\n",
            body="I am out of the office with limited access to email."))
        wait_until(lambda: any(e["event"] == "auto_reply" for e in events(wd)), 20,
                   "the out-of-office read")
        assert set(states(wd).values()) == {"active"}

        # Zed, who is not enrolled, answers Ann's email: someone at Acme answered.
        zed = mail("zed@acme.com", subject="Re: Thanks, Ann", in_reply_to=ann_first,
                   body="Ann forwarded this to me, I run purchasing here. Call me Monday?")
        drop_into(maildir, zed)
        # Dee (gmail.com) answers herself; Frank (gmail.com, not enrolled) writes afresh.
        drop_into(maildir, mail("dee@gmail.com", subject="Re: Thanks, Dee",
                                in_reply_to=dee_first, body="Thanks, not right now."))
        drop_into(maildir, mail("frank@gmail.com", subject="Hello",
                                body="Saw your talk, do you have slides?"))
        wait_until(lambda: states(wd)[("three", "dee@gmail.com")] == "replied", 20,
                   "dee's reply")
        wait_until(lambda: states(wd)[("three", "bob@sales.acme.com")] == "replied", 20,
                   "the company stop")
        # The reminder (15 s after the thank-you) goes to the three still active.
        smtp_server.wait_for(9, timeout=40)
    finally:
        assert terminate(proc) == 0, wd.log()
    assert states(wd) == {
        ("three", "ann@acme.com"): "replied",       # her thread was answered
        ("three", "bob@sales.acme.com"): "replied",  # a colleague, at a subdomain
        ("three", "cy@globex.com"): "active",       # another company
        ("three", "dee@gmail.com"): "replied",      # answered herself
        ("three", "eve@gmail.com"): "active",       # gmail.com is nobody's company
        ("other", "carol@acme.com"): "active",      # Acme, but another sequence
    }
    for address in ("ann@acme.com", "bob@sales.acme.com", "dee@gmail.com"):
        assert len(to(smtp_server, address)) == 1, f"nothing after the halt to {address}"
    for address in ("cy@globex.com", "eve@gmail.com", "carol@acme.com"):
        assert [d.message["Subject"].startswith("Re: ") for d in to(smtp_server, address)] \
            == [False, True], address
    log = events(wd)
    replied = {e["email"]: e for e in log if e["event"] == "replied"}
    assert set(replied) == {"ann@acme.com", "bob@sales.acme.com", "dee@gmail.com"}
    assert replied["bob@sales.acme.com"]["message_id"] == message_id(zed)
    assert str(replied["bob@sales.acme.com"]["detail"]).startswith(
        "company reply: zed@acme.com at acme.com answered")
    assert replied["ann@acme.com"]["message_id"] == message_id(zed)
    assert "matches no enrollment" in wd.log() and "frank@gmail.com" in wd.log()
    check_invariants(smtp_server.deliveries, f"sqlite:///{wd.path / 'sequencer.db'}")


def test_a_fresh_email_from_a_colleague_over_imap_halts_the_sequences_that_wrote_to_acme(
        tmp_path: Path, smtp_server: SmtpServer, dovecot: DovecotServer) -> None:
    wd = make_workdir(
        tmp_path, smtp_server.port, sequence=sequence("three"),
        extra="imap_idle: 30s\nimap_timeout: 5s\n",
        mailbox_extra=(f"    imap: {{host: 127.0.0.1, port: {dovecot.port}, username: "
                       f"{dovecot.username}, password_env: IMAP_PW, tls: none}}\n"))
    wd.env["IMAP_PW"] = dovecot.password
    wd.write("sequences/plain.yaml", sequence("plain", company=False))  # no company_reply
    wd.write("sequences/later.yaml", sequence("later", first="1h"))  # Acme not mailed yet
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@acme.com", "cy@globex.com"])),
           check=True)
    wd.cli("enroll", "plain", str(prospects_csv(wd, ["carol@acme.com"], "p.csv")), check=True)
    wd.cli("enroll", "later", str(prospects_csv(wd, ["dan@acme.com"], "l.csv")), check=True)
    proc = wd.start("run", "--log-format", "json", "--log-file", "events.jsonl")
    try:
        smtp_server.wait_for(3, timeout=20)
        wait_for_watcher(wd)
        time.sleep(0.3)  # let it settle into IDLE
        # No thread headers at all: Zed is not enrolled and writes a new email.
        zed = mail("zed@acme.com", subject="Your email to Ann",
                   body="Ann passed your note on to me. Can we talk next week?")
        dovecot.append(zed)
        wait_until(lambda: states(wd)[("three", "ann@acme.com")] == "replied", 10,
                   "the company stop")
        smtp_server.wait_for(5, timeout=20)  # the reminders to cy and carol
    finally:
        assert terminate(proc) == 0, wd.log()
    assert states(wd) == {
        ("three", "ann@acme.com"): "replied",
        ("three", "cy@globex.com"): "active",
        ("plain", "carol@acme.com"): "active",  # that sequence did not ask for company_reply
        ("later", "dan@acme.com"): "active",    # nobody at Acme heard from `later` yet
    }
    assert len(to(smtp_server, "ann@acme.com")) == 1
    assert to(smtp_server, "dan@acme.com") == []
    (halt,) = [e for e in events(wd) if e["event"] == "replied"]
    assert halt["email"] == "ann@acme.com" and halt["sequence"] == "three"
    assert halt["message_id"] == message_id(zed)
    assert "zed@acme.com" in str(halt["detail"])
    check_invariants(smtp_server.deliveries, f"sqlite:///{wd.path / 'sequencer.db'}")
