"""Small messages for the classifier tests, built the way the mail they stand for looks."""

from __future__ import annotations

from datetime import UTC, datetime

from sequencer.core.classify import Verdict, classify

NOW = datetime(2025, 11, 20, 12, 0, tzinfo=UTC)  # a Thursday
OWN = frozenset({"dana@example.com"})


def mail(headers: str, body: str = "Hello\n") -> bytes:
    """A message from header lines and a body; LF becomes CRLF."""
    return (headers.strip() + "\n\n" + body).replace("\n", "\r\n").encode("utf-8")


def read(raw: bytes) -> Verdict:
    """``classify`` as the watcher calls it (our own address, the clock)."""
    return classify(raw, own_addresses=OWN, now=NOW)


def reply_with(body: str, subject: str = "Re: Thanks for stopping by",
               headers: str = "") -> Verdict:
    """A prospect's answer to our first step, with ``body`` as its text."""
    return read(mail(f"From: Sam <sam@prospect.example>\nSubject: {subject}\n"
                     f"In-Reply-To: <seq-1-step-1@example.com>\n{headers}", body))


DSN = """From: MAILER-DAEMON@mx.example.net
To: dana@example.com
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Delivery report.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; Sam@Prospect.example
Action: {action}
Status: {status}
Diagnostic-Code: smtp; {diagnostic}

--B
Content-Type: text/rfc822-headers

From: dana@example.com
Message-ID: <seq-1-step-1@example.com>

--B--
"""


def dsn(action: str = "failed", status: str = "5.1.1",
        diagnostic: str = "550 5.1.1 <sam@prospect.example>: user unknown") -> bytes:
    """An RFC 3464 report about our first step to sam@prospect.example."""
    return DSN.format(action=action, status=status, diagnostic=diagnostic).encode()
