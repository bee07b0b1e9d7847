"""Hard or soft by cause (T3): only a bad address is hard; the sender's side and passing
faults are soft, whatever the class of the code."""

from __future__ import annotations

import pytest

from sequencer.core.classify import Kind
from sequencer.core.classify.causes import about, cause_of, command_of, severity_of
from tests.core.classify.mails import dsn, read


@pytest.mark.parametrize(
    ("status", "diagnostic", "cause", "severity"),
    [
        ("5.1.1", "550 5.1.1 <sam@prospect.example>: Recipient address rejected: User unknown",
         "userunknown", "hard"),
        ("5.1.2", "550 5.1.2 Host unknown: prospect.example", "hostunknown", "hard"),
        ("5.1.6", "551 5.1.6 recipient no longer on server", "hasmoved", "hard"),
        ("5.1.10", "550 5.1.10 Recipient address has null MX", "notaccept", "hard"),
        ("5.4.4", "550 5.4.4 Host or domain name not found", "hostunknown", "hard"),
        ("5.7.1", "550 5.7.1 Service unavailable; client [192.0.2.1] blocked using "
         "zen.spamhaus.org", "blocked", "soft"),
        ("5.7.26", "550 5.7.26 This message does not pass authentication checks (SPF and "
         "DKIM both do not pass)", "authfailure", "soft"),
        ("5.7.1", "550 5.7.1 Email rejected per DMARC policy for example.com", "authfailure",
         "soft"),
        ("5.7.1", "554 5.7.1 Message content rejected, UBE, spam", "spamdetected", "soft"),
        ("5.7.1", "550 5.7.1 Our system has detected an unusual rate of unsolicited mail",
         "spamdetected", "soft"),
        ("4.7.0", "421 4.7.0 Try again later, closing connection. Rate limit exceeded",
         "speeding", "soft"),
        ("5.2.2", "552 5.2.2 The email account that you tried to reach is over quota",
         "mailboxfull", "soft"),
        ("5.1.1", "550 5.1.1 mailbox full", "mailboxfull", "soft"),
        ("5.3.4", "552 5.3.4 Message too big for system", "mesgtoobig", "soft"),
        ("5.2.3", "552 5.2.3 Message size exceeds fixed maximum message size", "mesgtoobig",
         "soft"),
        ("4.4.7", "Message expired: unable to deliver in 840 minutes", "expired", "soft"),
        ("5.4.7", "delivery time expired", "expired", "soft"),
        ("5.7.1", "550 5.7.1 Relay access denied", "norelaying", "soft"),
        ("5.2.1", "550 5.2.1 The email account that you tried to reach is disabled", "suspend",
         "soft"),
        ("5.7.1", "550 5.7.1 Connections not accepted from servers without a valid sender "
         "domain. Fix reverse DNS", "requireptr", "soft"),
        ("4.1.1", "450 4.1.1 <sam@prospect.example>: Recipient address rejected: User unknown",
         "userunknown", "soft"),
        ("5.0.0", "550 Unknown user sam@prospect.example (in reply to end of DATA command)",
         "filtered", "soft"),
        ("5.1.8", "553 5.1.8 Domain of sender address dana@example.com does not exist",
         "rejected", "soft"),
        ("5.3.0", "553 5.3.0 Internal System Error", "systemerror", "soft"),
    ],
)
def test_cause_and_severity_follow_the_words_and_the_status(
        status: str, diagnostic: str, cause: str, severity: str) -> None:
    found = cause_of(status, diagnostic, "failed", command_of(diagnostic), True)
    assert found == cause
    assert severity_of(found, status, diagnostic, "failed") == severity


def test_a_sender_side_dsn_is_a_soft_bounce_that_does_not_suppress() -> None:
    verdict = read(dsn(status="5.7.1", diagnostic="550 5.7.1 SPF check failed for example.com"))
    assert (verdict.kind, verdict.bounce, verdict.cause) == (Kind.BOUNCE, "soft", "authfailure")


def test_a_delayed_or_relayed_action_is_never_hard() -> None:
    assert severity_of("userunknown", "5.1.1", "", "delayed") == "soft"


@pytest.mark.parametrize(
    ("text", "command"),
    [("550 5.1.1 user unknown (in reply to RCPT TO command)", "RCPT"),
     (">>> DATA\n<<< 550 Unknown user", "DATA"),
     ("SMTP error from remote mail server after MAIL FROM:<a@b>", "MAIL"),
     ("said: 554 no thanks (in reply to end of DATA command)", "DATA"),
     ("nothing said", "")],
)
def test_the_refused_command_is_read_from_the_transcript(text: str, command: str) -> None:
    assert command_of(text) == command


def test_about_keeps_the_block_of_the_recipient_asked_for() -> None:
    text = "<a@x.example>:\n550 user unknown\n\n<b@x.example>:\n552 mailbox full\n"
    assert "mailbox full" not in about(text)
    assert "user unknown" not in about(text, "b@x.example")
