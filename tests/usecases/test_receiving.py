"""The company stop in `receiving.handle`, driven in-process with an injected clock: what
counts as a company, what counts as a reply, and what it never does."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from sequencer.mail.watching import Inbound
from sequencer.store.schema import enrollments, events, suppressions
from sequencer.usecases import receiving
from sequencer.usecases.importing import run_enroll
from tests.fixtures.smtp import SmtpServer
from tests.harness import Engine
from tests.workdir import make_workdir, prospects_csv

SEQUENCE = """\
name: three
mailbox: sales
stop_on: [reply, company_reply, bounce, unsubscribe]
steps:
  - {name: thank-you, template: thank_you, wait: 0s}
  - {name: reminder, template: reminder, wait: 2d, thread: true}
"""


@pytest.fixture
def engine(tmp_path: Path, smtp_server: SmtpServer) -> Iterator[Engine]:
    wd = make_workdir(tmp_path, smtp_server.port, sequence=SEQUENCE,
                      extra="free_mail: [kabelmail.example]\n")
    eng = Engine(wd)
    yield eng
    eng.close()


def enroll(engine: Engine, emails: list[str]) -> None:
    wd = engine.wd
    run_enroll(engine.app, "three", prospects_csv(wd, emails, f"p{time.time_ns()}.csv"),
               progress=False)
    engine.step()


def first_id(smtp_server: SmtpServer, address: str) -> str:
    from email.utils import parseaddr

    for d in smtp_server.deliveries:
        if parseaddr(d.message["To"])[1].lower() == address.lower() or d.rcpt_tos == [address]:
            return str(d.message["Message-ID"])
    raise AssertionError(f"nothing was sent to {address}")


def reply(sender: str, in_reply_to: str | None = None, body: str = "Let's talk Tuesday.",
          headers: str = "") -> Inbound:
    thread = f"In-Reply-To: {in_reply_to}\r\nReferences: {in_reply_to}\r\n" if in_reply_to \
        else ""
    raw = (f"From: <{sender}>\r\nTo: dana@example.com\r\nSubject: Re: Thanks\r\n"
           f"Message-ID: <{time.time_ns()}@reply.test>\r\n{thread}{headers}"
           f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()
    return Inbound(uid=1, raw=raw)


def states(engine: Engine) -> dict[str, str]:
    with engine.app.store.read() as conn:
        return dict(conn.execute(select(enrollments.c.email, enrollments.c.state)).all())


def test_an_idn_company_matches_in_either_spelling(engine: Engine, smtp_server: SmtpServer) -> None:
    enroll(engine, ["ann@bücher.de", "bob@verkauf.bücher.de", "cy@example.org"])
    record = receiving.handle(engine.app, "sales", reply(
        "zed@xn--bcher-kva.de", first_id(smtp_server, "ann@xn--bcher-kva.de")))
    assert record is not None and record.event.value == "replied"
    assert states(engine) == {"ann@bücher.de": "replied", "bob@verkauf.bücher.de": "replied",
                              "cy@example.org": "active"}


def test_a_bounce_or_an_unsubscribe_from_the_company_halts_nobody_else(
        engine: Engine, smtp_server: SmtpServer) -> None:
    enroll(engine, ["ann@acme.com", "bob@acme.com", "cy@acme.com"])
    dsn = (b"From: MAILER-DAEMON@acme.com\r\nTo: dana@example.com\r\n"
           b"Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n"
           b"Message-ID: <dsn1@acme.com>\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
           b"--b\r\nContent-Type: text/plain\r\n\r\nann@acme.com: user unknown\r\n"
           b"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; acme.com"
           b"\r\n\r\nFinal-Recipient: rfc822; ann@acme.com\r\nAction: failed\r\n"
           b"Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
           b"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: "
           + first_id(smtp_server, "ann@acme.com").encode() + b"\r\n--b--\r\n")
    bounced = receiving.handle(engine.app, "sales", Inbound(uid=1, raw=dsn))
    assert bounced is not None and bounced.event.value == "bounced"
    unsubscribed = receiving.handle(engine.app, "sales", reply(
        "bob@acme.com", first_id(smtp_server, "bob@acme.com"),
        body="Please remove me from your list."))
    assert unsubscribed is not None and unsubscribed.event.value == "unsubscribed"
    assert states(engine) == {"ann@acme.com": "bounced", "bob@acme.com": "unsubscribed",
                              "cy@acme.com": "active"}


def test_a_colleague_at_our_own_company_or_a_listed_isp_is_nobodys_colleague(
        engine: Engine, smtp_server: SmtpServer) -> None:
    # Our mailbox is dana@example.com: someone at example.com writing in is one of us.
    enroll(engine, ["ann@example.com", "bob@example.com", "kim@kabelmail.example",
                    "lee@kabelmail.example"])
    receiving.handle(engine.app, "sales", reply(
        "boss@example.com", first_id(smtp_server, "ann@example.com")))
    receiving.handle(engine.app, "sales", reply(
        "kim@kabelmail.example", first_id(smtp_server, "kim@kabelmail.example")))
    assert states(engine) == {"ann@example.com": "replied", "bob@example.com": "active",
                              "kim@kabelmail.example": "replied",
                              "lee@kabelmail.example": "active"}


def test_one_halt_event_per_enrollment_naming_the_reply_and_never_a_suppression(
        engine: Engine, smtp_server: SmtpServer) -> None:
    enroll(engine, ["ann@acme.com", "bob@acme.com", "cy@acme.com"])
    message = reply("zed@acme.com")  # a fresh email, no thread: Acme was mailed, so it counts
    first = receiving.handle(engine.app, "sales", message)
    assert first is not None
    assert receiving.handle(engine.app, "sales", message) is None, "handled once"
    again = receiving.handle(engine.app, "sales", reply("yan@acme.com"))
    assert again is None, "nobody left to halt"
    with engine.app.store.read() as conn:
        halts = conn.execute(select(events.c.email, events.c.message_id, events.c.detail)
                             .where(events.c.event == "replied")).all()
        suppressed = conn.scalars(select(suppressions.c.email)).all()
    assert sorted(h.email for h in halts) == ["ann@acme.com", "bob@acme.com", "cy@acme.com"]
    zed_id = message.raw.split(b"Message-ID: ")[1].split(b"\r\n")[0].decode()
    assert {h.message_id for h in halts} == {zed_id}
    assert all(h.detail.startswith("company reply: zed@acme.com at acme.com answered")
               for h in halts)
    assert suppressed == []
    engine.clock.advance(days=3)
    assert engine.step() == 0, "no reminder for anyone at Acme"


def test_without_company_reply_a_colleague_halts_nobody(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, wait2="2d")
    eng = Engine(wd)
    try:
        run_enroll(eng.app, "three", prospects_csv(wd, ["ann@acme.com", "bob@acme.com"]),
                   progress=False)
        eng.step()
        assert receiving.handle(eng.app, "sales", reply("zed@acme.com")) is None
        ann = receiving.handle(eng.app, "sales",
                               reply("zed@acme.com", first_id(smtp_server, "ann@acme.com")))
        assert ann is not None and ann.detail == "human reply from zed@acme.com"
        assert states(eng) == {"ann@acme.com": "replied", "bob@acme.com": "active"}
    finally:
        eng.close()
