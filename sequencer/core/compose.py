"""Build the bytes of one outgoing email, then re-parse them to prove nothing was injected.

The message is written by hand (the stdlib ``EmailMessage`` costs ~2.5 ms a message): headers
are folded and RFC 2047-encoded here, bodies are ``text/plain`` (plus ``text/html`` in a
``multipart/alternative`` when the template has an HTML part) in UTF-8, 7bit when they can be
and quoted-printable otherwise, with CRLF line endings and no line over 998 bytes.

Every value written is checked for control characters first (``check_header_value``), and the
result is parsed again with the stdlib (``verify``): one To, no Cc/Bcc/Resent-*, only headers
we wrote, no control character even after RFC 2047 decoding. That last check is what makes an
encoded word such as ``=?UTF-8?Q?=0A?=Bcc:`` harmless whatever the Python version
(CVE-2024-6923): here such text is itself encoded, so any reader decodes it back to the same
literal text.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.header import decode_header
from email.parser import Parser
from email.policy import compat32
from email.utils import format_datetime, getaddresses

from sequencer.core.addresses import AddressError, ascii_domain
from sequencer.core.text import CONTROL, bare_subject
from sequencer.errors import HeaderInjectionError, InvalidArgument

_HEADER_NAME = re.compile(r"[!-9;-~]+")
_ADDR_SPEC = re.compile(r"[^\s@<>()\[\],;:\\\"]+@[^\s@<>()\[\],;:\\\"]+")
_DOMAIN = re.compile(r"(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+")
_MSG_ID = re.compile(r"<[!-;=?-~]+@[!-;=?-~]+>")
_NAME_ADDR = re.compile(r"([^<>]*)<([^<>]*)>")
_ATOM_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*")
_SEVEN_BIT_TEXT = re.compile(r"[\t\n\x20-\x7e]*")
_ENCODED_WORD_BYTES = 45  # 45 bytes -> 60 base64 chars -> a 72-char encoded word
_FOLD_AT = 78
_MAX_LINE = 998
_LONG_NAME = 200
_UNSUBSCRIBE_URI = re.compile(r"(?:https|http|mailto):[!-;=?-~]{1,900}")
_ONE_CLICK = "List-Unsubscribe=One-Click"

_STANDARD_HEADERS = frozenset(
    {
        "date", "from", "to", "subject", "message-id", "in-reply-to", "references",
        "list-unsubscribe", "list-unsubscribe-post", "mime-version", "content-type",
        "content-transfer-encoding",
    }
)  # fmt: skip
_FORBIDDEN_EXTRA = _STANDARD_HEADERS | {"cc", "bcc", "sender", "reply-to", "return-path"}


@dataclass(frozen=True)
class Rendered:
    """One prospect's email, rendered: a one-line subject, a text body, maybe an HTML body."""

    subject: str
    text: str
    html: str | None


def new_message_id(domain: str) -> str:
    """A fresh, globally unique Message-ID: ``<{uuid4 hex}@{domain}>``."""
    a_label = _ascii_domain(domain)
    if not _DOMAIN.fullmatch(a_label):
        raise InvalidArgument(f"invalid Message-ID domain {domain!r}")
    return f"<{uuid.uuid4().hex}@{a_label.rstrip('.')}>"


def check_header_value(name: str, value: str) -> None:
    """Refuse a value carrying any control character (CR, LF, NUL, TAB, DEL, U+0085, U+2028/9)."""
    match = CONTROL.search(value)
    if match is not None:
        raise HeaderInjectionError(
            f"{name}: control character {match.group()!r} at position {match.start()}"
        )


def compose(
    *,
    sender: str,
    to: str,
    rendered: Rendered,
    message_id: str,
    date: datetime,
    to_name: str | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    thread_subject: str | None = None,
    list_unsubscribe: Sequence[str] = (),
    extra_headers: Mapping[str, str] = {},  # noqa: B006 - read only
) -> bytes:
    """The full message as bytes (CRLF), ready for SMTP DATA; verified before it is returned.

    ``list_unsubscribe``: the unsubscribe URIs, in order of preference (RFC 2369): at most one
    http(s) URI, which also writes ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``
    (RFC 8058), and any ``mailto:`` URIs. Empty: no List-* header at all.
    """
    if isinstance(list_unsubscribe, str):
        list_unsubscribe = (list_unsubscribe,)
    headers = _headers(
        sender=sender,
        to=to,
        to_name=to_name,
        subject=_subject(rendered.subject, thread_subject),
        message_id=message_id,
        date=date,
        in_reply_to=in_reply_to,
        references=references,
        list_unsubscribe=list_unsubscribe,
        extra_headers=extra_headers,
    )
    head, body = _mime(rendered)
    data = ("".join(headers) + "".join(head) + "\r\n").encode("utf-8") + body
    verify(data, expected_to=to, message_id=message_id, allowed=extra_headers.keys())
    return data


def verify(data: bytes, *, expected_to: str, message_id: str, allowed: Iterable[str] = ()) -> None:
    """Re-parse ``data`` and refuse anything we did not mean to write (HeaderInjectionError).

    ``allowed`` names extra headers the caller wrote on purpose (``extra_headers``).
    """
    # Only the header block is parsed: the parser's own header section ends at the first
    # blank line, which is at or before the first CRLF CRLF, so it sees the same headers as
    # a parse of the whole message (and skips ~45 body lines of work; the body is ours).
    end = data.find(b"\r\n\r\n")
    try:
        text = (data if end < 0 else data[:end + 4]).decode("utf-8")
    except UnicodeDecodeError as err:
        raise HeaderInjectionError("message is not valid UTF-8") from err
    message = Parser(policy=compat32).parsestr(text, headersonly=True)
    if message.defects:
        raise HeaderInjectionError(f"malformed header block: {message.defects[0]!r}")
    permitted = _STANDARD_HEADERS | {name.lower() for name in allowed}
    seen: set[str] = set()
    for name, raw in message.items():
        key = name.lower()
        if key not in permitted:
            raise HeaderInjectionError(f"unexpected header {name!r}")
        if key in seen:
            raise HeaderInjectionError(f"header {name!r} appears twice")
        seen.add(key)
        _check_decoded(name, raw)
    _check_to(message.get_all("To") or [], expected_to)
    _check_one_click(message.get("List-Unsubscribe"), message.get("List-Unsubscribe-Post"))
    if _unfold(message.get("Message-ID", "")) != message_id:
        raise HeaderInjectionError("Message-ID does not match")


def _check_decoded(name: str, raw: str) -> None:
    value = _unfold(raw)
    check_header_value(name, value)
    if "=?" not in value:  # no encoded word: decoding gives back the same text
        return
    try:
        parts = decode_header(value)
    except (ValueError, binascii.Error) as err:
        raise HeaderInjectionError(f"{name}: undecodable encoded word") from err
    for chunk, charset in parts:
        if isinstance(chunk, bytes):
            try:
                decoded = chunk.decode(charset or "raw-unicode-escape")
            except (LookupError, UnicodeDecodeError) as err:
                raise HeaderInjectionError(f"{name}: undecodable encoded word") from err
        else:
            decoded = chunk
        check_header_value(name, decoded)


def _check_to(values: list[str], expected_to: str) -> None:
    if len(values) != 1:
        raise HeaderInjectionError(f"expected exactly one To header, found {len(values)}")
    addresses = getaddresses([_unfold(values[0])])
    if len(addresses) != 1:
        raise HeaderInjectionError(f"expected exactly one To address, found {len(addresses)}")
    if addresses[0][1] != _header_address(expected_to):
        raise HeaderInjectionError("To address does not match the recipient")


def _check_one_click(urls: str | None, post: str | None) -> None:
    """RFC 8058: the Post header carries exactly the one-click value, and only beside an
    http(s) URI in List-Unsubscribe."""
    if post is None:
        return
    if _unfold(post).strip() != _ONE_CLICK:
        raise HeaderInjectionError("List-Unsubscribe-Post: not the one-click value")
    if urls is None or not re.search(r"<https?:", _unfold(urls)):
        raise HeaderInjectionError("List-Unsubscribe-Post without an http(s) URI")


def _unfold(value: str) -> str:
    return re.sub(r"\r?\n(?=[ \t])", "", value)


def _subject(subject: str, thread_subject: str | None) -> str:
    if thread_subject is None:
        return subject
    return "Re: " + bare_subject(thread_subject).strip()


def _headers(
    *,
    sender: str,
    to: str,
    to_name: str | None,
    subject: str,
    message_id: str,
    date: datetime,
    in_reply_to: str | None,
    references: Sequence[str],
    list_unsubscribe: Sequence[str],
    extra_headers: Mapping[str, str],
) -> list[str]:
    if date.tzinfo is None or date.utcoffset() is None:
        raise InvalidArgument("date must be timezone-aware")
    lines = [
        f"Date: {format_datetime(date)}\r\n",
        f"From: {_mailbox('From', *_split_sender(sender))}\r\n",
        f"To: {_mailbox('To', to_name, to)}\r\n",
        _unstructured("Subject", subject),
        f"Message-ID: {_message_id('Message-ID', message_id)}\r\n",
    ]
    if in_reply_to is not None:
        lines.append(f"In-Reply-To: {_message_id('In-Reply-To', in_reply_to)}\r\n")
    if references:
        ids = [_message_id("References", ref) for ref in references]
        lines.append("References: " + "\r\n ".join(ids) + "\r\n")
    if list_unsubscribe:
        lines.extend(_list_unsubscribe(list_unsubscribe))
    for name, value in extra_headers.items():
        lines.append(_extra(name, value))
    return lines


def _split_sender(sender: str) -> tuple[str | None, str]:
    """``Name <address>``, ``"Name" <address>`` or a bare address; nothing looser."""
    check_header_value("From", sender)
    match = _NAME_ADDR.fullmatch(sender.strip())
    if match is None:
        return None, sender.strip()
    name = match.group(1).strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = re.sub(r"\\(.)", r"\1", name[1:-1])
    return (name or None), match.group(2)


def _mailbox(header: str, name: str | None, address: str) -> str:
    check_header_value(header, address)
    if not _ADDR_SPEC.fullmatch(address):
        raise HeaderInjectionError(f"{header}: not a single bare address: {address!r}")
    written = _header_address(address)
    if not name:
        return written
    check_header_value(header, name)
    return f"{_phrase(name)} <{written}>"


def _header_address(address: str) -> str:
    """The address as written in a header: an IDN domain as its ASCII (A-label) form."""
    local, _, domain = address.rpartition("@")
    return f"{local}@{_ascii_domain(domain)}"


def _ascii_domain(domain: str) -> str:
    """IDNA 2008 A-labels (``faß.de`` is ``xn--fa-hia.de``, never IDNA 2003's ``fass.de``)."""
    if domain.isascii():
        return domain
    try:
        return ascii_domain(domain)
    except AddressError as err:
        raise HeaderInjectionError(f"invalid domain {domain!r}") from err


def _phrase(name: str) -> str:
    """A display name: as is when plain, quoted when it has specials, encoded when not ASCII."""
    if not name.isascii() or "=?" in name or len(name) > _LONG_NAME:
        return "\r\n ".join(_encoded_words(name))
    if _ATOM_PHRASE.fullmatch(name) and name.strip() == name and "  " not in name:
        return name
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _unstructured(header: str, value: str) -> str:
    """``Header: value`` folded at whitespace; encoded words for non-ASCII or ``=?`` text."""
    check_header_value(header, value)
    if not value.isascii() or "=?" in value or any(len(w) > 900 for w in value.split(" ")):
        return f"{header}: " + "\r\n ".join(_encoded_words(value)) + "\r\n"
    start = f"{header}:"
    lines: list[str] = []
    current = start
    for word in value.split(" "):
        if word and current != start and len(current) + 1 + len(word) > _FOLD_AT:
            lines.append(current)
            current = ""
        current += " " + word
    lines.append(current)
    return "\r\n".join(lines) + "\r\n"


def _encoded_words(text: str) -> list[str]:
    """RFC 2047 B-encoded words, each under 76 characters, splitting only between characters."""
    words: list[str] = []
    chunk = bytearray()
    for char in text:
        encoded = char.encode("utf-8")
        if len(chunk) + len(encoded) > _ENCODED_WORD_BYTES:
            words.append(_b_word(bytes(chunk)))
            chunk.clear()
        chunk.extend(encoded)
    if chunk or not words:
        words.append(_b_word(bytes(chunk)))
    return words


def _b_word(data: bytes) -> str:
    return "=?utf-8?b?" + base64.b64encode(data).decode("ascii") + "?="


def _message_id(header: str, value: str) -> str:
    check_header_value(header, value)
    if not _MSG_ID.fullmatch(value):
        raise HeaderInjectionError(f"{header}: not a Message-ID: {value!r}")
    return value


def _list_unsubscribe(urls: Sequence[str]) -> list[str]:
    for url in urls:
        check_header_value("List-Unsubscribe", url)
        if not _UNSUBSCRIBE_URI.fullmatch(url):
            raise HeaderInjectionError(f"List-Unsubscribe: not a usable URI: {url!r}")
    web = [url for url in urls if not url.startswith("mailto:")]
    if len(web) > 1:
        raise HeaderInjectionError("List-Unsubscribe: RFC 8058 allows one http(s) URI")
    # One URI per line: each stays under the 998-byte limit however long the other is.
    lines = ["List-Unsubscribe: " + ",\r\n ".join(f"<{url}>" for url in urls) + "\r\n"]
    if web:
        lines.append(f"List-Unsubscribe-Post: {_ONE_CLICK}\r\n")
    return lines


def _extra(name: str, value: str) -> str:
    if (
        not _HEADER_NAME.fullmatch(name)
        or len(name) > 60
        or name.lower() in _FORBIDDEN_EXTRA
        or name.lower().startswith("resent-")
    ):
        raise HeaderInjectionError(f"extra header name not allowed: {name!r}")
    return _unstructured(name, value)


def _mime(rendered: Rendered) -> tuple[list[str], bytes]:
    """(MIME header lines, body bytes)."""
    text_cte, text_body = _encode_body(rendered.text)
    if rendered.html is None:
        return [
            "MIME-Version: 1.0\r\n",
            'Content-Type: text/plain; charset="utf-8"\r\n',
            f"Content-Transfer-Encoding: {text_cte}\r\n",
        ], text_body
    html_cte, html_body = _encode_body(rendered.html)
    boundary = _boundary(text_body, html_body)
    delimiter = f"--{boundary}\r\n".encode("ascii")
    body = b"".join(
        [
            delimiter,
            f'Content-Type: text/plain; charset="utf-8"\r\n'
            f"Content-Transfer-Encoding: {text_cte}\r\n\r\n".encode("ascii"),
            text_body,
            b"\r\n",
            delimiter,
            f'Content-Type: text/html; charset="utf-8"\r\n'
            f"Content-Transfer-Encoding: {html_cte}\r\n\r\n".encode("ascii"),
            html_body,
            f"\r\n--{boundary}--\r\n".encode("ascii"),
        ]
    )
    return [
        "MIME-Version: 1.0\r\n",
        f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n',
    ], body


def _boundary(*parts: bytes) -> str:
    while True:
        boundary = f"=_{uuid.uuid4().hex}"
        if not any(boundary.encode("ascii") in part for part in parts):
            return boundary


def _encode_body(text: str) -> tuple[str, bytes]:
    """(Content-Transfer-Encoding, CRLF body bytes): 7bit when plain, quoted-printable if not."""
    normalized = text.replace("\r\n", "\n").replace("\r", "\n")
    if not normalized.endswith("\n"):
        normalized += "\n"
    if _SEVEN_BIT_TEXT.fullmatch(normalized) and _max_line(normalized) <= _MAX_LINE:
        return "7bit", normalized.replace("\n", "\r\n").encode("ascii")
    encoded = binascii.b2a_qp(normalized.encode("utf-8"), istext=True)
    return "quoted-printable", encoded.replace(b"\n", b"\r\n")


def _max_line(text: str) -> int:
    return max(len(line) for line in text.split("\n"))
