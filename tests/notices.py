"""Inbound notices as strangers (and real mail systems) write them: DSNs, ARF reports,
unsubscribes, with or without our Message-ID and an Authentication-Results header."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import format_datetime

OUR_BOX = "Dana Reyes <dana@example.com>"


def _head(sender: str, subject: str, extra: str) -> str:
    return (f"{extra}From: {sender}\r\nTo: {OUR_BOX}\r\nSubject: {subject}\r\n"
            f"Date: {format_datetime(datetime.now(UTC))}\r\n"
            f"Message-ID: <n{time.time_ns()}@notices.example>\r\nMIME-Version: 1.0\r\n")


def dsn(recipient: str, *, status: str = "5.1.1", original_id: str | None = None,
        sender: str = "MAILER-DAEMON@stranger.example", auth: str = "") -> bytes:
    """An RFC 3464 delivery status notification naming ``recipient``; with ``original_id``
    it returns the headers of that message (as real DSNs do)."""
    headers = (f"From: {OUR_BOX}\r\nTo: {recipient}\r\nSubject: Hello\r\n"
               f"Message-ID: {original_id or '<someone-else@stranger.example>'}\r\n")
    action = "failed"  # a final failure; 4.x.x statuses are soft (e.g. 4.4.7 expired)
    return (_head(sender, "Undelivered Mail Returned to Sender", auth) +
            'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
            "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
            "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
            "Reporting-MTA: dns; mx.stranger.example\r\n\r\n"
            f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n"
            f"Diagnostic-Code: smtp; 550 {status} mailbox unavailable\r\n\r\n"
            f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers}\r\n--B--\r\n").encode()


def arf(recipient: str, *, original_id: str | None = None,
        sender: str = "reports@stranger.example", auth: str = "") -> bytes:
    """An RFC 5965 abuse report naming ``recipient``, with the reported message's headers."""
    headers = (f"From: {OUR_BOX}\r\nTo: {recipient}\r\nSubject: Hello\r\n"
               f"Message-ID: {original_id or '<someone-else@stranger.example>'}\r\n")
    return (_head(sender, "Abuse report", auth) +
            'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n\r\n'
            "--F\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n"
            "--F\r\nContent-Type: message/feedback-report\r\n\r\n"
            f"Feedback-Type: abuse\r\nUser-Agent: test/1.0\r\nVersion: 1\r\n"
            f"Original-Rcpt-To: {recipient}\r\n\r\n"
            f"--F\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers}\r\n--F--\r\n").encode()


def unsubscribe(sender: str, *, in_reply_to: str | None = None, auth: str = "") -> bytes:
    """"unsubscribe" from ``sender``: a new thread, or a reply to ``in_reply_to``."""
    thread = f"In-Reply-To: {in_reply_to}\r\nReferences: {in_reply_to}\r\n" if in_reply_to \
        else ""
    return (_head(f"Someone <{sender}>", "unsubscribe", auth + thread) +
            "Content-Type: text/plain; charset=utf-8\r\n\r\nPlease unsubscribe me.\r\n").encode()


def authentication_results(authserv_id: str, domain: str, result: str = "pass") -> str:
    """The header a receiving server adds on top (RFC 8601)."""
    return (f"Authentication-Results: {authserv_id}; spf=pass smtp.mailfrom={domain};\r\n"
            f" dkim={result} header.d={domain} header.s=s1; dmarc={result} (p=reject)"
            f" header.from={domain}\r\n")
