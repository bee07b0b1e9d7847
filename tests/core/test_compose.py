"""compose: headers re-parsed one by one, threading, List-Unsubscribe, encoding, X1 and X2."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage, MIMEPart
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from sequencer.core.compose import (
    Rendered,
    check_header_value,
    compose,
    new_message_id,
    verify,
)
from sequencer.errors import HeaderInjectionError
from sequencer.templating.templates import TemplateSet

CVE_2024_6923 = "=?UTF-8?Q?=0A?=Bcc: evil@example.net"
DATE = datetime(2025, 3, 4, 9, 30, tzinfo=timezone(timedelta(hours=-5)))
MID = "<0123456789abcdef0123456789abcdef@example.com>"


def build(**overrides: Any) -> bytes:
    arguments: dict[str, Any] = {
        "sender": "Dana Reyes <dana@example.com>",
        "to": "ana@example.org",
        "to_name": "Ana Lima",
        "rendered": Rendered("Thanks, Ana", "Hi Ana,\nthanks for stopping by.\n", None),
        "message_id": MID,
        "date": DATE,
    }
    arguments.update(overrides)
    return compose(**arguments)


def parse(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def content(part: MIMEPart | None) -> str:
    """A part's decoded text with the wire's CRLF turned back into LF."""
    assert part is not None
    text = part.get_content()
    assert isinstance(text, str)
    return text.replace("\r\n", "\n")


def test_plain_message_has_exactly_the_headers_we_wrote(tmp_path: Path) -> None:
    message = parse(build())
    assert message.keys() == [
        "Date", "From", "To", "Subject", "Message-ID", "MIME-Version", "Content-Type",
        "Content-Transfer-Encoding",
    ]  # fmt: skip
    assert message["Date"] == "Tue, 04 Mar 2025 09:30:00 -0500"
    assert message["From"] == "Dana Reyes <dana@example.com>"
    assert message["To"] == "Ana Lima <ana@example.org>"
    assert message["Subject"] == "Thanks, Ana"
    assert message["Message-ID"] == MID
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message["Content-Transfer-Encoding"] == "7bit"
    assert content(message) == "Hi Ana,\nthanks for stopping by.\n"


def test_every_line_ends_in_crlf_and_stays_under_998_bytes() -> None:
    long_line = "word " * 400
    data = build(rendered=Rendered("Hi", long_line + "\nnext\rline\r\n", "<p>" + long_line))
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    message = parse(data)
    assert content(message.get_body(("plain",))) == long_line + "\nnext\nline\n"


def test_html_part_makes_a_multipart_alternative_with_both_bodies() -> None:
    message = parse(build(rendered=Rendered("Hi", "Hi Ana\n", "<p>Hi Ana &amp; co</p>\n")))
    assert message.get_content_type() == "multipart/alternative"
    assert content(message.get_body(("plain",))) == "Hi Ana\n"
    assert content(message.get_body(("html",))) == "<p>Hi Ana &amp; co</p>\n"


def test_non_ascii_names_subject_and_body_round_trip() -> None:
    data = build(
        sender="Zoë Ñúñez <zoe@example.com>",
        to_name="Jürgen Ångström 山田",
        rendered=Rendered("Grüße aus Köln — 東京 " * 4, "Olá, ça va? 🙂\n", None),
    )
    assert data.split(b"\r\n\r\n")[0].isascii()
    message = parse(data)
    assert message["From"].addresses[0].display_name == "Zoë Ñúñez"
    assert message["To"].addresses[0].display_name == "Jürgen Ångström 山田"
    assert message["Subject"] == "Grüße aus Köln — 東京 " * 4
    assert message["Content-Transfer-Encoding"] == "quoted-printable"
    assert content(message) == "Olá, ça va? 🙂\n"


def test_display_name_with_specials_is_quoted() -> None:
    message = parse(build(to_name='Lima, Ana "AL"'))
    assert message["To"].addresses[0].display_name == 'Lima, Ana "AL"'
    assert message["To"].addresses[0].addr_spec == "ana@example.org"


def test_long_ascii_subject_is_folded_and_unfolds_to_the_same_text() -> None:
    subject = " ".join(f"word{i}" for i in range(60))
    data = build(rendered=Rendered(subject, "x\n", None))
    head = data.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert max(len(line) for line in head) <= 78
    assert parse(data)["Subject"] == subject


def test_thread_step_replies_with_re_subject_and_threading_headers() -> None:
    first = "<aaaa@example.com>"
    second = "<bbbb@example.com>"
    message = parse(
        build(
            thread_subject="Re: RE: Thanks, Ana",
            in_reply_to=second,
            references=[first, second],
        )
    )
    assert message["Subject"] == "Re: Thanks, Ana"
    assert message["In-Reply-To"] == second
    assert message["References"].split() == [first, second]


def test_https_list_unsubscribe_adds_one_click_post() -> None:
    message = parse(build(list_unsubscribe="https://example.com/u/abc?x=1"))
    assert message["List-Unsubscribe"] == "<https://example.com/u/abc?x=1>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_mailto_list_unsubscribe_has_no_one_click_post() -> None:
    message = parse(build(list_unsubscribe="mailto:unsubscribe@example.com?subject=stop"))
    assert message["List-Unsubscribe"] == "<mailto:unsubscribe@example.com?subject=stop>"
    assert "List-Unsubscribe-Post" not in message


def test_the_link_and_the_mailto_share_one_header_with_one_click_post() -> None:
    link = "https://example.com/u/" + "t" * 300
    data = build(list_unsubscribe=(link, "mailto:dana@example.com?subject=unsubscribe"))
    message = parse(data)
    uris = re.findall(r"<([^<>]+)>", message["List-Unsubscribe"])
    assert uris == [link, "mailto:dana@example.com?subject=unsubscribe"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert max(len(line) for line in data.split(b"\r\n")) < 400, "one URI per folded line"


def test_no_unsubscribe_uris_means_no_list_headers() -> None:
    message = parse(build(list_unsubscribe=()))
    assert "List-Unsubscribe" not in message and "List-Unsubscribe-Post" not in message


@pytest.mark.parametrize(
    "uris",
    [
        ("https://a.example/u/1", "https://b.example/u/2"),
        ("https://a.example/u/<1>",),
        ("javascript:alert(1)",),
    ],
)
def test_unusable_unsubscribe_uris_are_refused(uris: tuple[str, ...]) -> None:
    with pytest.raises(HeaderInjectionError):
        build(list_unsubscribe=uris)


def test_verify_refuses_a_one_click_post_without_an_http_uri() -> None:
    data = build(list_unsubscribe=("mailto:dana@example.com?subject=unsubscribe",))
    forged = data.replace(b"MIME-Version:", b"List-Unsubscribe-Post: List-Unsubscribe=One-Click"
                          b"\r\nMIME-Version:", 1)
    with pytest.raises(HeaderInjectionError, match="without an http"):
        verify(forged, expected_to="ana@example.org", message_id=MID)


def test_extra_headers_are_written_and_verified() -> None:
    message = parse(build(extra_headers={"X-Sequencer-Step": "reminder"}))
    assert message["X-Sequencer-Step"] == "reminder"


@pytest.mark.parametrize("name", ["Bcc", "cc", "To", "Resent-To", "Bad Name", "X:Y"])
def test_extra_headers_cannot_add_recipients_or_bad_names(name: str) -> None:
    with pytest.raises(HeaderInjectionError):
        build(extra_headers={name: "x@example.net"})


def test_new_message_id_is_unique_and_well_formed() -> None:
    ids = {new_message_id("mail.example.com") for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"<[0-9a-f]{32}@mail\.example\.com>", mid) for mid in ids)


@pytest.mark.parametrize("domain", ["", "exa mple.com", "a@b.com", "example.com>", "-x.com"])
def test_new_message_id_refuses_a_bad_domain(domain: str) -> None:
    with pytest.raises(ValueError):
        new_message_id(domain)


def test_naive_date_is_refused() -> None:
    with pytest.raises(ValueError):
        build(date=datetime(2025, 1, 1))


@pytest.mark.parametrize(
    "char", ["\r", "\n", "\x00", "\t", "\x1b", "\x7f", "\x85", "\u2028", "\u2029"]
)
def test_check_header_value_refuses_every_control_character(char: str) -> None:
    with pytest.raises(HeaderInjectionError):
        check_header_value("Subject", f"Hello{char}Bcc: evil@example.net")


def test_check_header_value_accepts_ordinary_text() -> None:
    check_header_value("Subject", "Grüße — a normal subject (100%)")


@pytest.mark.parametrize(
    "overrides",
    [
        {"to_name": "Ana\r\nBcc: evil@example.net"},
        {"rendered": Rendered("Hi\nBcc: evil@example.net", "x", None)},
        {"sender": "Dana\n <dana@example.com>"},
        {"thread_subject": "Hi\r\nBcc: evil@example.net"},
        {"in_reply_to": "<a@b>\r\nBcc: evil@example.net"},
        {"list_unsubscribe": "https://x.example/\r\nBcc: evil@example.net"},
        {"extra_headers": {"X-Step": "a\nBcc: evil@example.net"}},
    ],
)
def test_compose_refuses_line_breaks_in_any_header_value(overrides: Mapping[str, Any]) -> None:
    with pytest.raises(HeaderInjectionError):
        build(**overrides)


@pytest.mark.parametrize(
    "to", ["a@example.org, b@example.org", "a@example.org;b@example.org", "a@b@example.org",
           "Ana <a@example.org>", "a@example.org b@example.org"],
)  # fmt: skip
def test_compose_refuses_more_than_one_recipient(to: str) -> None:
    with pytest.raises(HeaderInjectionError):
        build(to=to)


def assert_harmless(data: bytes, literal: str, header: str) -> None:
    message = parse(data)
    assert message.get_all("To") is not None and len(message.get_all("To") or []) == 1
    assert message["To"].addresses[0].addr_spec == "ana@example.org"
    assert "Bcc" not in message and "Cc" not in message
    assert literal in str(message[header])


def test_encoded_word_injection_in_first_name_stays_literal_text() -> None:
    data = build(to_name=f"{CVE_2024_6923} Ana")
    assert_harmless(data, CVE_2024_6923, "To")


def test_encoded_word_injection_in_subject_stays_literal_text() -> None:
    data = build(rendered=Rendered(f"Hi {CVE_2024_6923}", "x", None))
    assert_harmless(data, CVE_2024_6923, "Subject")


def test_encoded_word_injection_in_company_via_template_stays_literal_text(
    tmp_path: Path,
) -> None:
    (tmp_path / "t.txt.j2").write_text("Subject: News for {{ company }}\n\nHi\n")
    rendered = TemplateSet(tmp_path).get("t").render({"company": CVE_2024_6923})
    assert_harmless(build(rendered=rendered), CVE_2024_6923, "Subject")


@pytest.mark.parametrize("quote", ['"', ""])
def test_encoded_word_injection_in_sender_name_stays_literal_text(quote: str) -> None:
    message = parse(build(sender=f"{quote}{CVE_2024_6923}{quote} <dana@example.com>"))
    assert message["From"].addresses[0].addr_spec == "dana@example.com"
    assert message["From"].addresses[0].display_name == CVE_2024_6923
    assert_harmless(build(sender=f"{CVE_2024_6923} <dana@example.com>"), CVE_2024_6923, "From")


@pytest.mark.parametrize(
    "sender", ["Dana <dana@example.com> <evil@example.net>", "<a@b.example>, <c@d.example>"]
)
def test_sender_with_more_than_one_address_is_refused(sender: str) -> None:
    with pytest.raises(HeaderInjectionError):
        build(sender=sender)


RAW_HEAD = (
    "Date: Tue, 04 Mar 2025 09:30:00 -0500\r\nFrom: dana@example.com\r\n"
    "To: ana@example.org\r\nMessage-ID: " + MID + "\r\n"
)


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ("Bcc: evil@example.net\r\n", "unexpected header"),
        ("To: evil@example.net\r\n", "appears twice"),
        ("Subject: =?UTF-8?Q?=0A?=Bcc: evil@example.net\r\n", "control character"),
        ("Subject: =?utf-8?b?SGkNCkJjYzogZXZpbEBleGFtcGxlLm5ldA==?=\r\n", "control character"),
        ("Subject: =?x-unknown?q?hi?=\r\n", "undecodable"),
        ("Resent-To: evil@example.net\r\n", "unexpected header"),
    ],
)
def test_verify_refuses_headers_we_did_not_write(extra: str, reason: str) -> None:
    data = (RAW_HEAD + extra + "\r\nbody\r\n").encode()
    with pytest.raises(HeaderInjectionError, match=reason):
        verify(data, expected_to="ana@example.org", message_id=MID)


def test_verify_refuses_a_to_header_with_two_addresses() -> None:
    data = RAW_HEAD.replace("To: ana@example.org", "To: ana@example.org, evil@example.net")
    with pytest.raises(HeaderInjectionError, match="exactly one To address"):
        verify((data + "\r\nbody\r\n").encode(), expected_to="ana@example.org", message_id=MID)


def test_verify_refuses_a_different_recipient_or_message_id() -> None:
    data = (RAW_HEAD + "\r\nbody\r\n").encode()
    with pytest.raises(HeaderInjectionError, match="To address does not match"):
        verify(data, expected_to="bob@example.org", message_id=MID)
    with pytest.raises(HeaderInjectionError, match="Message-ID does not match"):
        verify(data, expected_to="ana@example.org", message_id="<other@example.com>")


def test_verify_accepts_what_compose_wrote() -> None:
    verify(build(), expected_to="ana@example.org", message_id=MID)


def test_idn_domain_is_written_in_ascii_form() -> None:
    message = parse(build(to="ana@münchen.example"))
    assert message["To"].addresses[0].addr_spec == "ana@xn--mnchen-3ya.example"


def test_idn_domains_use_idna_2008_not_2003() -> None:
    """IDNA 2003 maps ß to ss: faß.de would go to fass.de, which is another domain."""
    message = parse(build(to="Ana@faß.de"))
    assert message["To"].addresses[0].addr_spec == "Ana@xn--fa-hia.de"
    assert new_message_id("faß.de").endswith("@xn--fa-hia.de>")


async def test_smtp_server_receives_the_injection_attempt_as_one_harmless_message(
    smtp_server: Any,
) -> None:
    data = build(
        to_name=f"{CVE_2024_6923} Ana",
        rendered=Rendered(f"Hi {CVE_2024_6923}", "Body\n", "<p>Body</p>"),
        date=datetime.now(UTC),
    )
    await aiosmtplib.send(
        data,
        sender="dana@example.com",
        recipients=["ana@example.org"],
        hostname=smtp_server.host,
        port=smtp_server.port,
        start_tls=False,
    )
    (delivery,) = await smtp_server.wait_for_async(1)
    assert delivery.rcpt_tos == ["ana@example.org"]
    assert "Bcc" not in delivery.message
    assert delivery.message["Subject"] == f"Hi {CVE_2024_6923}"
    assert len(delivery.message.get_all("To")) == 1
