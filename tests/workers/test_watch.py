"""Replies halt sequences, end to end through `sequencer run` and a real Dovecot (issue 3:
W1, W2 through the engine; an out-of-office never halts and delays the next step)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from sqlalchemy import select

from sequencer.mail.watching import Inbound
from sequencer.store.schema import enrollments, events
from sequencer.usecases import receiving
from sequencer.usecases.importing import control, run_enroll
from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.smtp import Delivery, SmtpServer
from tests.harness import Engine
from tests.invariants import check_invariants
from tests.mail.imap.test_watcher import deliver_to_maildir
from tests.workdir import (
    Workdir,
    make_workdir,
    prospects_csv,
    terminate,
    wait_for_watcher,
    wait_until,
)


def imap_workdir(tmp_path: Path, smtp_port: int, dovecot: DovecotServer,
                 wait2: str = "3s") -> Workdir:
    wd = make_workdir(
        tmp_path, smtp_port, wait2=wait2, wait3="1h",
        extra="imap_idle: 30s\nimap_timeout: 5s\n",
        mailbox_extra=(f"    imap: {{host: 127.0.0.1, port: {dovecot.port}, username: "
                       f"{dovecot.username}, password_env: IMAP_PW, tls: none}}\n"))
    wd.env["IMAP_PW"] = dovecot.password
    return wd


def reply_to(delivery: Delivery, body: str = "Sounds good, let's talk Thursday.",
             extra_headers: str = "", subject: str | None = None) -> bytes:
    msg = delivery.message
    rcpt = delivery.rcpt_tos[0]
    return (
        f"From: Prospect <{rcpt}>\r\nTo: {msg['From']}\r\n"
        f"Subject: {subject or 'Re: ' + msg['Subject']}\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\n"
        f"Message-ID: <reply-{time.time_ns()}@example.org>\r\n"
        f"In-Reply-To: {msg['Message-ID']}\r\nReferences: {msg['Message-ID']}\r\n"
        f"{extra_headers}Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def test_w1_a_reply_appended_during_idle_halts_the_sequence_before_its_next_step(
        tmp_path: Path, smtp_server: SmtpServer, dovecot: DovecotServer) -> None:
    wd = imap_workdir(tmp_path, smtp_server.port, dovecot, wait2="4s")
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com", "bo@example.com"])),
           check=True)
    proc = wd.start("run")
    try:
        first = smtp_server.wait_for(2, timeout=15)
        wait_for_watcher(wd)
        time.sleep(0.3)  # let it settle into IDLE
        ann = next(d for d in first if d.rcpt_tos == ["ann@example.com"])
        appended = time.monotonic()
        dovecot.append(reply_to(ann))
        wait_until(lambda: {s["email"]: s["state"] for s in wd.status()}["ann@example.com"]
                   == "replied", 5, "ann replied")
        latency = time.monotonic() - appended
        smtp_server.wait_for(3, timeout=20)  # bo gets the next step
    finally:
        assert terminate(proc) == 0
    print(f"reply-to-halt through `sequencer run`: {latency:.2f} s (incl. status CLI start)")
    to_ann = [d for d in smtp_server.deliveries if d.rcpt_tos == ["ann@example.com"]]
    assert len(to_ann) == 1, "the next step never went to ann"
    assert "replied" in wd.log()
    check_invariants(smtp_server.deliveries, f"sqlite:///{wd.path / 'sequencer.db'}")


def test_w2_a_reply_that_arrives_while_dovecot_is_down_is_found_on_reconnect(
        tmp_path: Path, smtp_server: SmtpServer, dovecot: DovecotServer) -> None:
    wd = imap_workdir(tmp_path, smtp_server.port, dovecot, wait2="8s")
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com"])), check=True)
    dovecot.append(b"From: news@example.net\r\nSubject: hello\r\n\r\nnot for us\r\n")
    proc = wd.start("run")
    try:
        (first,) = smtp_server.wait_for(1, timeout=15)
        wait_for_watcher(wd)
        dovecot.kill()
        deliver_to_maildir(dovecot, reply_to(first), f"{time.time_ns()}.M1P1.test")
        dovecot.start()
        wait_until(lambda: wd.status()[0]["state"] == "replied", 20, "found on reconnect")
    finally:
        assert terminate(proc) == 0
    assert len(smtp_server.deliveries) == 1


def test_an_out_of_office_never_halts_and_its_return_date_delays_the_next_step(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, wait2="2d", wait3="1w")
    engine = Engine(wd)
    try:
        run_enroll(engine.app, "three", prospects_csv(wd, ["ann@example.com"]), progress=False)
        engine.step()
        (first,) = smtp_server.deliveries
        back = (engine.clock.now + timedelta(days=10)).date()
        ooo = reply_to(first, subject="Automatic reply: " + first.message["Subject"],
                       extra_headers="Auto-Submitted: auto-replied\r\n",
                       body=f"I am out of the office until {back.isoformat()} with limited "
                            "access to email.")
        record = receiving.handle(engine.app, "sales", Inbound(uid=1, raw=ooo))
        assert record is not None and record.event.value == "auto_reply"
        with engine.app.store.read() as conn:
            row = conn.execute(select(enrollments)).one()
            kinds = conn.scalars(select(events.c.event)).all()
        assert row.state == "active"
        assert row.next_due.date() > back, "pushed past the return date"
        assert "auto_reply" in kinds and "replied" not in kinds
        engine.clock.advance(days=5)  # the original wait (2d) is over, the person is not back
        assert engine.step() == 0
        engine.clock.now = row.next_due
        assert engine.step() == 1
        assert len(smtp_server.deliveries) == 2
    finally:
        engine.close()


def postfix_delayed(delivery: Delivery) -> bytes:
    """Postfix's "Delayed Mail (still being retried)" warning about ``delivery``."""
    rcpt = delivery.rcpt_tos[0]
    return (
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
        f"To: {delivery.message['From']}\r\nSubject: Delayed Mail (still being retried)\r\n"
        f"Message-ID: <delayed-{time.time_ns()}@mx.example.net>\r\nAuto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
        "--B\r\nContent-Type: text/plain\r\n\r\n# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO "
        "RESEND YOUR MESSAGE. #\r\n\r\nYour message could not be delivered for more than 4 "
        f"hour(s).\r\nIt will be retried until it is 5 day(s) old.\r\n\r\n<{rcpt}>: connect "
        "to mx.example.org: Connection timed out\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net"
        f"\r\n\r\nFinal-Recipient: rfc822; {rcpt}\r\nAction: delayed\r\nStatus: 4.4.1\r\n"
        "Diagnostic-Code: X-Postfix; connect to mx.example.org: Connection timed out\r\n\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: "
        f"{delivery.message['Message-ID']}\r\n\r\n--B--\r\n").encode()


def test_a_delayed_mail_warning_is_its_own_event_never_a_bounce(tmp_path: Path,
                                                                 smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port)
    engine = Engine(wd)
    try:
        run_enroll(engine.app, "three", prospects_csv(wd, ["ann@example.com"]), progress=False)
        engine.step()
        raw = postfix_delayed(smtp_server.deliveries[0])
        record = receiving.handle(engine.app, "sales", Inbound(uid=1, raw=raw))
        assert record is not None and record.event.value == "delayed"
        with engine.app.store.read() as conn:
            state = conn.execute(select(enrollments.c.state)).scalar()
            kinds = conn.scalars(select(events.c.event)).all()
        assert state == "active"
        assert "delayed" in kinds and "bounced" not in kinds
    finally:
        engine.close()


def test_our_own_sent_mail_in_the_folder_is_never_a_reply(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port)
    engine = Engine(wd)
    try:
        run_enroll(engine.app, "three", prospects_csv(wd, ["ann@example.com"]), progress=False)
        engine.step()
        (first,) = smtp_server.deliveries
        assert receiving.handle(engine.app, "sales", Inbound(uid=1, raw=first.raw)) is None
        with engine.app.store.read() as conn:
            assert conn.execute(select(enrollments.c.state)).scalar() == "active"
    finally:
        engine.close()


def test_the_same_reply_seen_twice_is_handled_once(tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port)
    engine = Engine(wd)
    try:
        run_enroll(engine.app, "three", prospects_csv(wd, ["ann@example.com"]), progress=False)
        engine.step()
        raw = reply_to(smtp_server.deliveries[0])
        assert receiving.handle(engine.app, "sales", Inbound(uid=1, raw=raw)) is not None
        assert receiving.handle(engine.app, "sales", Inbound(uid=7, raw=raw)) is None
        with engine.app.store.read() as conn:
            assert conn.scalars(select(events.c.event)).all().count("replied") == 1
    finally:
        engine.close()


def test_an_unsubscribe_reply_halts_and_suppresses_across_sequences(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, extra="max_active_sequences: 2\n")
    wd.write("sequences/other.yaml", "name: other\nmailbox: sales\nsteps:\n"
             "  - {name: a, template: reminder, wait: 1d}\n")
    engine = Engine(wd)
    try:
        run_enroll(engine.app, "three", prospects_csv(wd, ["ann@example.com"]), progress=False)
        run_enroll(engine.app, "other", prospects_csv(wd, ["ann@example.com"], "o.csv"),
                   progress=False)
        engine.step()
        raw = reply_to(smtp_server.deliveries[0], body="Please remove me from your list.")
        record = receiving.handle(engine.app, "sales", Inbound(uid=1, raw=raw))
        assert record is not None and record.event.value == "unsubscribed"
        engine.clock.advance(days=30)
        assert engine.step() == 0
        with engine.app.store.read() as conn:
            states = set(conn.scalars(select(enrollments.c.state)).all())
        assert states == {"unsubscribed"}
        again = run_enroll(engine.app, "three", prospects_csv(wd, ["ann@example.com"], "x.csv"),
                           progress=False)
        assert again.enrolled == 0 and "suppressed" in again.rejected[0].reason \
            or "already" in again.rejected[0].reason
    finally:
        engine.close()



def test_an_unsubscribe_reply_also_halts_the_addresses_paused_enrollments(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, extra="max_active_sequences: 2\n")
    wd.write("sequences/other.yaml", "name: other\nmailbox: sales\nsteps:\n"
             "  - {name: a, template: reminder, wait: 1d}\n")
    engine = Engine(wd)
    try:
        run_enroll(engine.app, "three", prospects_csv(wd, ["ann@example.com"]), progress=False)
        run_enroll(engine.app, "other", prospects_csv(wd, ["ann@example.com"], "o.csv"),
                   progress=False)
        control(engine.app, "pause", "ann@example.com", "other")
        engine.step()
        raw = reply_to(smtp_server.deliveries[0], body="Please remove me from your list.")
        assert receiving.handle(engine.app, "sales", Inbound(uid=1, raw=raw)) is not None
        with engine.app.store.read() as conn:
            states = dict(conn.execute(select(enrollments.c.sequence, enrollments.c.state)).all())
        assert states == {"three": "unsubscribed", "other": "unsubscribed"}
        _, refusals = control(engine.app, "resume", "ann@example.com", "other")
        assert refusals, "a halted enrollment was resumed"
    finally:
        engine.close()

def _hostile_messages() -> list[bytes]:
    parts = "".join(f"--b\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n" for i in range(5000))
    many = (b"From: x@example.net\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts.encode() + b"--b--\r\n")
    words = b"From: y@example.net\r\nSubject: " + b" ".join(
        [b"=?UTF-8?Q?=0A=0D?=" for _ in range(3000)]) + b"\r\n\r\nhi\r\n"
    charset = (b"From: z@example.net\r\nSubject: =?x-unknown-9?Q?abc?=\r\n"
               b"Content-Type: text/plain; charset=x-unknown-9\r\n\r\n\xff\xfe\xfd\r\n")
    truncated = (b"From: w@example.net\r\nSubject: cut\r\nMIME-Version: 1.0\r\n"
                 b'Content-Type: multipart/mixed; boundary="q"\r\n\r\n--q\r\n'
                 b"Content-Type: message/rfc822\r\n\r\nFrom: ")
    return [many, words, charset, truncated]


def test_w6_hostile_inbound_mail_is_skipped_and_the_watcher_keeps_halting_replies(
        tmp_path: Path, smtp_server: SmtpServer, dovecot: DovecotServer) -> None:
    wd = imap_workdir(tmp_path, smtp_server.port, dovecot, wait2="6s")
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com"])), check=True)
    proc = wd.start("run")
    try:
        (first,) = smtp_server.wait_for(1, timeout=15)
        wait_for_watcher(wd)
        for raw in _hostile_messages():
            dovecot.append(raw)
        dovecot.append(reply_to(first))
        wait_until(lambda: wd.status()[0]["state"] == "replied", 20, "the reply after them")
        assert proc.poll() is None, "the worker is still running"
    finally:
        assert terminate(proc) == 0
    assert "Traceback" not in wd.log()
    assert len(smtp_server.deliveries) == 1
