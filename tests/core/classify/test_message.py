"""Hostile input (W6): whatever the bytes, a verdict comes back quickly and bounded."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest

from sequencer.core.classify import Kind, Verdict, classify
from tests.core.classify.mails import NOW, OWN, mail

HEAD = b"From: a@b.example\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"


def _huge() -> bytes:
    return HEAD + b"Content-Type: text/plain\r\n\r\n" + (b"x" * 76 + b"\r\n") * 270_000


def _many_parts() -> bytes:
    parts = b"".join(b"--B\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i
                     for i in range(5000))
    return HEAD + b"Content-Type: multipart/mixed; boundary=B\r\n\r\n" + parts + b"--B--\r\n"


def _deep_parts() -> bytes:
    nest = b"".join(b"--B%d\r\nContent-Type: multipart/mixed; boundary=B%d\r\n\r\n" % (i, i + 1)
                    for i in range(5000))
    return HEAD + b"Content-Type: multipart/mixed; boundary=B0\r\n\r\n" + nest


def _encoded_words() -> bytes:
    words = b"\r\n ".join(b"=?utf-8?q?=C3=A9t=C3=A9?=" for _ in range(20_000))
    return b"From: " + words + b" <a@b.example>\r\nSubject: " + words + b"\r\n\r\nbody\r\n"


def _bad_charsets() -> bytes:
    return (b"From: =?x-nope?q?=FF?= <a@b.example>\r\nSubject: =?utf-7?b?////?= \xff\xfe\r\n"
            b"Content-Type: text/plain; charset=x-no-such\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\nhell=F6 =?x?\r\n")


def _truncated_mime() -> bytes:
    return HEAD + (b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
                   b"Content-Type: text/plain; charset=utf-8\r\n"
                   b"Content-Transfer-Encoding: base64\r\n\r\nSGVsbG8gd29y")


def _tiny_parts() -> bytes:
    parts = b"--B\r\n\r\nx\r\n" * 500_000
    return HEAD + b"Content-Type: multipart/mixed; boundary=B\r\n\r\n" + parts


def _dsn_blocks() -> bytes:
    blocks = b"".join(b"Final-Recipient: rfc822; x%d@y.example\r\nAction: failed\r\n"
                      b"Status: 5.1.1\r\n\r\n" % i for i in range(100_000))
    return (HEAD + b"Content-Type: multipart/report; report-type=delivery-status; boundary=B"
            b"\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n" + blocks + b"--B--\r\n")


def _many_headers() -> bytes:
    return b"".join(b"X-H%d: v\r\n" % i for i in range(300_000)) + HEAD + b"\r\nbody"


def _deep_json() -> bytes:
    return mail("From: no-reply@sns.amazonaws.com\nSubject: AWS Notification Message",
                '{"notificationType":' + "[" * 150_000)


def _long_ooo() -> bytes:
    text = "Ich bin bis zum 1.12. nicht im Büro. " * 20_000
    return mail("From: sam@prospect.example\nSubject: Abwesenheitsnotiz", text)


@pytest.mark.parametrize(
    "make",
    [_huge, _many_parts, _deep_parts, _encoded_words, _bad_charsets, _truncated_mime,
     _tiny_parts, _dsn_blocks, _many_headers, _deep_json, _long_ooo, lambda: b"",
     lambda: bytes(range(256)) * 64],
    ids=["20MB", "5000-parts", "5000-deep", "encoded-words", "bad-charsets", "truncated-mime",
         "500k-tiny-parts", "100k-dsn-blocks", "300k-headers", "deep-json", "long-ooo", "empty",
         "binary"],
)
def test_hostile_message_comes_back_quickly_with_a_verdict(make: Callable[[], bytes]) -> None:
    raw = make()
    started = time.perf_counter()
    verdict = classify(raw, own_addresses=OWN, now=NOW)
    elapsed = time.perf_counter() - started
    assert isinstance(verdict, Verdict) and verdict.reason
    assert elapsed < 5.0


def test_hostile_message_that_breaks_the_parser_is_unrelated_and_the_core_logs_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        verdict = classify(_deep_parts())
    assert (verdict.kind, verdict.reason) == (Kind.UNRELATED, "unparseable: RecursionError")
    assert caplog.records == []   # the watcher logs the verdict; the pure core never logs


def test_input_is_cut_at_max_bytes() -> None:
    raw = mail("From: sam@prospect.example", "Thanks!\n" + "x" * 5000 + "\nunsubscribe\n")
    assert classify(raw).kind is Kind.UNSUBSCRIBE
    assert classify(raw, max_bytes=200).kind is Kind.REPLY


def test_charset_damage_does_not_stop_a_reply_being_read() -> None:
    verdict = classify(_bad_charsets(), now=NOW)
    assert (verdict.kind, verdict.sender) == (Kind.REPLY, "a@b.example")
