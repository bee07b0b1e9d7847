"""Bounces (K1): RFC 3464 reports and vendor notices; what is not a bounce; delayed mail."""

from __future__ import annotations

import pytest

from sequencer.core.classify import Kind
from tests.core.classify.mails import dsn, mail, read, reply_with
from tests.corpus import CORPUS


def corpus(name: str) -> bytes:
    return (CORPUS / "sisimai" / name).read_bytes()


def test_dsn_gives_the_cause_the_lowercased_recipient_and_our_message_id() -> None:
    verdict = read(dsn())
    assert (verdict.kind, verdict.subkind, verdict.bounce, verdict.cause) == (
        Kind.BOUNCE, "failure", "hard", "userunknown")
    assert verdict.recipient == "sam@prospect.example"
    assert verdict.original_message_id == "<seq-1-step-1@example.com>"
    assert verdict.reason == "RFC 3464 Action: failed, Status: 5.1.1, cause: userunknown"


@pytest.mark.parametrize("action", ["delivered", "relayed", "expanded"])
def test_a_success_report_is_an_auto_reply_that_neither_halts_nor_suppresses(action: str) -> None:
    verdict = read(dsn(action=action, status="2.0.0", diagnostic="250 2.0.0 OK"))
    assert (verdict.kind, verdict.subkind, verdict.bounce) == (
        Kind.AUTO_REPLY, "delivery_success", None)
    assert verdict.original_message_id == "<seq-1-step-1@example.com>"


def test_a_two_x_x_status_without_an_action_is_a_success_not_a_bounce() -> None:
    raw = dsn(status="2.1.5", diagnostic="250 2.1.5 Recipient OK").replace(
        b"Action: failed\n", b"")
    assert read(raw).kind is Kind.AUTO_REPLY


def test_a_delayed_report_is_a_delayed_bounce_whatever_its_status() -> None:
    verdict = read(dsn(action="delayed", status="5.0.0", diagnostic="550 will retry"))
    assert (verdict.kind, verdict.subkind, verdict.bounce) == (Kind.BOUNCE, "delayed", "soft")


POSTFIX_DELAYED = """From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
Subject: Delayed Mail (still being retried)
To: dana@example.com
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.net.

####################################################################
# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
####################################################################

Your message could not be delivered for more than 4 hour(s).
It will be retried until it is 5 day(s) old.

<sam@prospect.example>: connect to mx.prospect.example[192.0.2.7]:25: Connection
    timed out

--B
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; sam@prospect.example
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.prospect.example[192.0.2.7]:25:
    Connection timed out
Will-Retry-Until: Mon, 24 Nov 2025 10:00:00 +0000

--B
Content-Type: text/rfc822-headers

Message-ID: <seq-1-step-1@example.com>

--B--
"""


def test_postfix_delayed_mail_is_delayed_not_a_bounce_that_counts() -> None:
    verdict = read(POSTFIX_DELAYED.encode())
    assert (verdict.kind, verdict.subkind, verdict.bounce, verdict.cause) == (
        Kind.BOUNCE, "delayed", "soft", "expired")
    assert verdict.recipient == "sam@prospect.example"


def test_a_delayed_notice_in_the_corpus_is_delayed() -> None:
    verdict = read(corpus("lhost-gmail-09.eml"))
    assert (verdict.kind, verdict.subkind, verdict.bounce) == (Kind.BOUNCE, "delayed", "soft")


@pytest.mark.parametrize(
    ("body", "severity", "cause"),
    [
        ("Delivery to the following recipient has been delayed:\n  sam@prospect.example\n",
         "soft", "expired"),
        ("<sam@prospect.example>:\n550 5.1.1 User unknown\n", "hard", "userunknown"),
        ("<sam@prospect.example>: host said: 452 mailbox full\n", "soft", "mailboxfull"),
        ("<sam@prospect.example>: message expired\n", "soft", "expired"),
        ("<sam@prospect.example>: it did not work\n", "soft", "onhold"),
        ("Final-Recipient: rfc822; sam@prospect.example\nAction: failed\n"
         "Diagnostic-Code: smtp; 421 try later\n", "soft", "onhold"),
        ("Final-Recipient: rfc822; sam@prospect.example\nAction: failed\n"
         "Diagnostic-Code: smtp; user unknown\n", "hard", "userunknown"),
    ],
)
def test_vendor_notice_is_hard_or_soft_by_its_words(body: str, severity: str, cause: str) -> None:
    raw = mail("From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\n"
               "Subject: Mail delivery failed", body)
    verdict = read(raw)
    assert (verdict.kind, verdict.bounce, verdict.cause, verdict.recipient) == (
        Kind.BOUNCE, severity, cause, "sam@prospect.example")


def test_a_notice_about_two_recipients_is_read_for_the_first() -> None:
    body = ("<sam@prospect.example>:\n550 5.1.1 User unknown\n\n"
            "<kim@prospect.example>:\n552 5.2.2 Mailbox full\n")
    verdict = read(mail("From: MAILER-DAEMON@mx.example.net\nSubject: failure notice", body))
    assert (verdict.recipient, verdict.cause, verdict.bounce) == (
        "sam@prospect.example", "userunknown", "hard")


@pytest.mark.parametrize(
    "body",
    ["Hello, this is the postmaster. Our server will be down for maintenance on Sunday.\n",
     "Your message was received and will be read by the administrator.\n"],
)
def test_a_postmaster_note_without_any_failure_is_not_a_bounce(body: str) -> None:
    verdict = read(mail("From: Postmaster <postmaster@prospect.example>\n"
                        "Subject: Information", body))
    assert verdict.kind is Kind.UNRELATED
    assert verdict.bounce is None


@pytest.mark.parametrize("subject", ["Re: Delivery failure", "Delivery failure on order 12"])
def test_person_writing_about_a_delivery_failure_is_a_reply(subject: str) -> None:
    verdict = reply_with("The parcel could not be delivered: 550 boxes!", subject)
    assert verdict.kind is Kind.REPLY


def test_failure_subject_with_a_null_return_path_is_a_bounce() -> None:
    raw = mail("Return-Path: <>\nFrom: mail@mx.example.net\nSubject: Delivery failure",
               "sam@prospect.example: no such mailbox\n")
    verdict = read(raw)
    assert (verdict.kind, verdict.recipient) == (Kind.BOUNCE, "sam@prospect.example")


def test_an_auto_replied_not_a_valid_user_notice_is_a_bounce_not_an_out_of_office() -> None:
    raw = mail("From: Helpdesk <noreply@prospect.example>\nTo: dana@example.com\n"
               "Subject: Re: Thanks for stopping by\nAuto-Submitted: auto-replied",
               "This is an automated reply.\n\nsam@prospect.example is not a valid user here. "
               "Your message was not delivered.\n")
    verdict = read(raw)
    assert (verdict.kind, verdict.subkind) == (Kind.BOUNCE, "failure")
    assert verdict.recipient == "sam@prospect.example"
    assert verdict.bounce == "soft"   # prose without a status code: decays, never suppresses alone


def test_vendor_notice_recipient_skips_mail_system_addresses() -> None:
    raw = mail("From: MAILER-DAEMON@mx.example.net\nSubject: failure notice",
               "From postmaster@mx.example.net: could not deliver to sam@prospect.example\n")
    assert read(raw).recipient == "sam@prospect.example"


def test_postfix_dsn_from_the_corpus_gives_recipient_status_and_our_message_id() -> None:
    verdict = read(corpus("rhost-franceptt-11.eml"))
    assert verdict.recipient == "xxxx@laposte.net"
    assert verdict.reason.startswith("RFC 3464 Action: failed, Status: 4.2.1")
    assert verdict.original_message_id is not None
    assert verdict.original_message_id.startswith("<1576577162.")


def test_arf_report_is_a_complaint_naming_the_recipient_and_our_message() -> None:
    verdict = read(corpus("arf-23.eml"))
    assert (verdict.kind, verdict.subkind) == (Kind.COMPLAINT, "arf")
    assert verdict.recipient == "kijitora@example.com"
    assert verdict.original_message_id == "<0000000000fffffffff0000000000000@example.com>"
