"""Reading one raw message, with the work bounded whatever the input.

The stdlib parser builds one object per MIME part and per ``message/delivery-status``
block, which makes a few megabytes of tiny parts cost tens of seconds. So the bytes are
cut before parsing (``bounded``): at most ``MAX_HEADER_BYTES`` of header fields, parsing
stops at the ``MAX_DELIMITERS``-th line starting with ``--``, and DSN parts are read as
text (``bounce.dsn_fields`` reads them, bounded). After parsing, at most ``MAX_PARTS``
parts are walked and only the first ``MAX_TEXT_CHARS`` of any text are looked at.
"""

from __future__ import annotations

import email
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.header import decode_header
from email.message import Message

MAX_BYTES = 10 * 1024 * 1024        # the watcher's own budget (mail.watching.DEFAULT_MAX_BYTES)
MAX_PARTS = 300
MAX_TEXT_CHARS = 100_000
MAX_HEADER_CHARS = 2_000
MAX_RAW_PART_BYTES = 400_000
MAX_DELIMITERS = 4 * MAX_PARTS      # lines starting with "--" (MIME boundaries) parsed at most
MAX_HEADER_BYTES = 256 * 1024

_DSN_TYPE_RE = re.compile(rb"(?im)^(content-type:[ \t]*)message/(?:global-)?delivery-status")
_ADDRESS_RE = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9-]+)+"
)
_ANGLE_RE = re.compile(r"<\s*([^<>\s]+@[^<>\s]+)\s*>")
_ID_RE = re.compile(r"<[^<>\s]{1,500}>")
ATTACHED_TYPES = ("message/rfc822", "message/global")
RETURNED_TYPES = ("message/rfc822", "message/global", "text/rfc822-headers",
                  "message/rfc822-headers")


@dataclass(frozen=True)
class Mail:
    """A parsed message and what every rule looks at first."""

    msg: Message
    parts: tuple[Message, ...]          # bounded walk, attachments' insides included
    own_parts: tuple[Message, ...]      # the parts that are not inside an attached message
    subject: str
    sender: str | None                  # the From address, lower-cased
    from_header: str                    # the From field, decoded

    def header(self, name: str) -> str:
        return header(self.msg, name)

    decoded: dict[tuple[object, ...], list[str]] = field(default_factory=dict, compare=False,
                                                         repr=False)

    def texts(self, *kinds: str, attached: bool = False) -> list[str]:
        """Decoded texts of the parts of these types (own parts only unless ``attached``);
        each part is decoded once per message."""
        key = (attached, *kinds)
        if key not in self.decoded:
            self.decoded[key] = texts(self.parts if attached else self.own_parts, kinds)
        return self.decoded[key]

    def attaches(self, *kinds: str) -> bool:
        return any(p.get_content_type() in kinds for p in self.own_parts)


def bounded(raw: bytes, max_bytes: int = MAX_BYTES) -> bytes:
    """The bytes the parser is allowed to see (see the module docs)."""
    raw = _cap_header_block(bytes(raw[:max_bytes]))
    at = -1
    for _ in range(MAX_DELIMITERS):
        at = raw.find(b"\n--", at + 1)
        if at < 0:
            break
    else:
        raw = raw[:at + 1]
    return _DSN_TYPE_RE.sub(rb"\1text/x-delivery-status", raw)


def _cap_header_block(raw: bytes) -> bytes:
    """At most ``MAX_HEADER_BYTES`` of header fields (the body is kept)."""
    blank = re.search(rb"\r?\n\r?\n", raw)
    end = blank.start() if blank else len(raw)
    if end <= MAX_HEADER_BYTES:
        return raw
    cut = raw.rfind(b"\n", 0, MAX_HEADER_BYTES) + 1 or MAX_HEADER_BYTES
    return raw[:cut] + (raw[blank.start():] if blank else b"")


def parse(raw: bytes, max_bytes: int = MAX_BYTES) -> Mail | None:
    """The message in ``raw``, or None when it has no header fields at all."""
    msg = email.message_from_bytes(bounded(raw, max_bytes), policy=policy.compat32)
    if not msg.keys():
        return None
    parts: list[Message] = []
    own_parts: list[Message] = []
    for part, attached in _walk(msg):
        parts.append(part)
        if not attached:
            own_parts.append(part)
    from_header = header(msg, "From")
    return Mail(msg, tuple(parts), tuple(own_parts), header(msg, "Subject"),
                _sender(msg, from_header), from_header)


def _sender(msg: Message, from_header: str) -> str | None:
    """The From address, lower-cased; the ``<addr>`` form wins over a display name."""
    raw = str(next((v for k, v in msg.raw_items() if k.lower() == "from"), ""))
    angle = _ANGLE_RE.findall(raw[-1_000:])
    if angle:
        return bare_address(angle[-1])
    return bare_address(from_header)


def bare_address(value: str) -> str | None:
    """``rfc822; <A@B.example>`` -> ``a@b.example``."""
    match = _ADDRESS_RE.search(value)
    return match.group(0).lower() if match else None


def addresses(text: str) -> Iterator[str]:
    """Every address in ``text``, lower-cased, in order."""
    for match in _ADDRESS_RE.finditer(text):
        yield match.group(0).lower()


def _walk(msg: Message) -> Iterator[tuple[Message, bool]]:
    """Depth-first parts, at most ``MAX_PARTS``; the flag says "inside an attached message"."""
    stack: list[tuple[Message, bool]] = [(msg, False)]
    seen = 0
    while stack and seen < MAX_PARTS:
        part, attached = stack.pop()
        seen += 1
        yield part, attached
        payload = part.get_payload()
        if isinstance(payload, list):
            inner = attached or part.get_content_type() in ATTACHED_TYPES
            children = [p for p in payload[:MAX_PARTS] if isinstance(p, Message)]
            stack.extend((child, inner) for child in reversed(children))


def header(msg: Message, name: str) -> str:
    """A header field's value, encoded-words decoded, bounded, never raising on charsets."""
    wanted = name.lower()
    value = next((v for k, v in msg.raw_items() if k.lower() == wanted), None)
    if value is None:
        return ""
    text = str(value)[:MAX_HEADER_CHARS]
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    out: list[str] = []
    for chunk, charset in decode_header(text):
        if isinstance(chunk, str):
            out.append(chunk)
        else:
            out.append(_decode(chunk, charset))
    return re.sub(r"\s+", " ", "".join(out)).strip()


def _decode(data: bytes, charset: str | None) -> str:
    try:
        return data.decode(charset or "utf-8", "replace")
    except LookupError:
        return data.decode("latin-1")


def part_text(part: Message) -> str:
    """The decoded text of a non-multipart part (transfer encoding and charset undone)."""
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    return _decode(data[:MAX_RAW_PART_BYTES], charset)[:MAX_TEXT_CHARS]


def texts(parts: tuple[Message, ...], kinds: tuple[str, ...]) -> list[str]:
    """Texts of the parts of these types, and of multiparts whose MIME structure is broken."""
    return [part_text(p) for p in parts if p.get_content_type() in kinds
            or (p.get_content_maintype() == "multipart" and isinstance(p.get_payload(), str))]


def message_id(value: object) -> str | None:
    match = _ID_RE.search(str(value or "")[:MAX_HEADER_CHARS])
    return match.group(0) if match else None


def references(msg: Message) -> tuple[str, ...]:
    """In-Reply-To, then References: the Message-IDs this message answers, at most 100."""
    found: list[str] = []
    for name in ("In-Reply-To", "References"):
        text = str(msg.get(name) or "")[: MAX_HEADER_CHARS * 4]
        for ref in _ID_RE.findall(text):
            if ref not in found:
                found.append(ref)
    return tuple(found[:100])
