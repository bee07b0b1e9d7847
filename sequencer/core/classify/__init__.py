"""Inbound mail -> reply | auto-reply | bounce | complaint | unsubscribe | unrelated.

Pure: no I/O, no clock (``now`` is an argument), and ``classify`` never raises: a
message it cannot read comes back ``unrelated`` with the reason. Work is bounded for
hostile input: the raw bytes are cut to ``max_bytes``, at most ``MAX_PARTS`` MIME parts
are looked at, and only the first ``MAX_TEXT_CHARS`` of any text are scanned.
"""

from __future__ import annotations

import email
import html
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from email import policy
from email.header import decode_header
from email.message import Message
from enum import StrEnum
from typing import Literal

from sequencer.core.classify import bounce as bn
from sequencer.core.text import bare_subject

log = logging.getLogger(__name__)

MAX_PARTS = 300
MAX_TEXT_CHARS = 100_000
MAX_HEADER_CHARS = 2_000
MAX_RAW_PART_BYTES = 400_000
_DEFAULT_MAX_BYTES = 10 * 1024 * 1024
MAX_DELIMITERS = 4 * MAX_PARTS      # lines starting with "--" (MIME boundaries) parsed at most
MAX_HEADER_BYTES = 256 * 1024
_DSN_TYPE_RE = re.compile(rb"(?im)^(content-type:[ \t]*)message/(?:global-)?delivery-status")


class Kind(StrEnum):
    REPLY = "reply"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    UNRELATED = "unrelated"


@dataclass(frozen=True)
class Verdict:
    """How the watcher reads one inbound message."""

    kind: Kind
    reason: str
    bounce: Literal["hard", "soft"] | None = None
    recipient: str | None = None
    original_message_id: str | None = None
    return_date: date | None = None
    sender: str | None = None
    message_id: str | None = None
    references: tuple[str, ...] = ()

    def as_dict(self, file: str | None = None) -> dict[str, object]:
        """JSON-ready form for ``sequencer classify --json``."""
        return {
            "file": file,
            "kind": self.kind.value,
            "reason": self.reason,
            "bounce": self.bounce,
            "recipient": self.recipient,
            "original_message_id": self.original_message_id,
            "return_date": self.return_date.isoformat() if self.return_date else None,
            "sender": self.sender,
            "message_id": self.message_id,
            "references": list(self.references),
        }


def classify(raw: bytes, *, own_addresses: frozenset[str] = frozenset(),
             now: datetime | None = None, max_bytes: int = _DEFAULT_MAX_BYTES) -> Verdict:
    """Read one raw message. Never raises: unreadable mail is ``unrelated``."""
    try:
        own = frozenset(address.lower() for address in own_addresses)
        return _classify(_bounded(bytes(raw[:max_bytes])), own, now)
    except Exception as err:  # noqa: BLE001 - hostile mail must never stop the watcher
        log.warning("unparseable inbound message: %s", type(err).__name__)
        return Verdict(Kind.UNRELATED, f"unparseable: {type(err).__name__}")


# --- reading a message -----------------------------------------------------------------


def _bounded(raw: bytes) -> bytes:
    """Cut the input so that the stdlib parser's work stays small whatever the input.

    The parser builds one object per MIME part and per ``message/delivery-status`` block,
    which makes a few megabytes of tiny parts cost tens of seconds. So the bytes stop at
    the ``MAX_DELIMITERS``-th line starting with ``--``, and DSN parts are read as text
    (``_field_blocks`` reads them, bounded).
    """
    raw = _cap_header_block(raw)
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


@dataclass(frozen=True)
class _Mail:
    msg: Message
    parts: tuple[Message, ...]          # bounded walk, attachments' insides included
    own_parts: tuple[Message, ...]      # the parts that are not inside an attached message
    subject: str
    sender: str | None
    from_header: str


def _classify(raw: bytes, own: frozenset[str], now: datetime | None) -> Verdict:
    msg = email.message_from_bytes(raw, policy=policy.compat32)
    if not msg.keys():
        return Verdict(Kind.UNRELATED, "unparseable: no header fields")
    mail = _read(msg)
    return replace(_decide(mail, own, now), sender=mail.sender,
                   message_id=_message_id(msg.get("Message-ID")), references=_references(msg))


def _decide(mail: _Mail, own: frozenset[str], now: datetime | None) -> Verdict:
    if mail.sender is not None and mail.sender in own:
        return Verdict(Kind.UNRELATED, "from our own address")
    found = _complaint(mail) or _bounce(mail) or _mailing_list(mail) or _auto_reply(mail, now)
    if found is not None:
        return found
    if mail.sender is None:
        return Verdict(Kind.UNRELATED, "no sender address")
    return _unsubscribe(mail) or Verdict(Kind.REPLY, "human reply")


def _read(msg: Message) -> _Mail:
    parts: list[Message] = []
    own_parts: list[Message] = []
    for part, attached in _walk(msg):
        parts.append(part)
        if not attached:
            own_parts.append(part)
    from_header = header(msg, "From")
    return _Mail(msg, tuple(parts), tuple(own_parts), header(msg, "Subject"),
                 _sender(msg, from_header), from_header)


def _sender(msg: Message, from_header: str) -> str | None:
    """The From address, lower-cased; the ``<addr>`` form wins over a display name."""
    raw = str(next((v for k, v in msg.raw_items() if k.lower() == "from"), ""))
    angle = re.findall(r"<\s*([^<>\s]+@[^<>\s]+)\s*>", raw[-1_000:])
    if angle:
        return bn.bare_address(angle[-1])
    return bn.bare_address(from_header)


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
            inner = attached or part.get_content_type() in ("message/rfc822", "message/global")
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


def _texts(parts: tuple[Message, ...], kinds: tuple[str, ...]) -> list[str]:
    """Texts of the parts of these types, and of multiparts whose MIME structure is broken."""
    return [part_text(p) for p in parts if p.get_content_type() in kinds
            or (p.get_content_maintype() == "multipart" and isinstance(p.get_payload(), str))]


def _message_id(value: object) -> str | None:
    match = re.search(r"<[^<>\s]{1,500}>", str(value or "")[:MAX_HEADER_CHARS])
    return match.group(0) if match else None


def _references(msg: Message) -> tuple[str, ...]:
    found: list[str] = []
    for name in ("In-Reply-To", "References"):
        text = str(msg.get(name) or "")[: MAX_HEADER_CHARS * 4]
        for ref in re.findall(r"<[^<>\s]{1,500}>", text):
            if ref not in found:
                found.append(ref)
    return tuple(found[:100])


# --- complaints and bounces ------------------------------------------------------------


def _complaint(mail: _Mail) -> Verdict | None:
    found = bn.complaint_from(mail.msg, mail.parts, mail.subject)
    if found is None:
        return None
    return Verdict(Kind.COMPLAINT, found.reason, recipient=found.recipient,
                   original_message_id=found.original_message_id)


def _bounce(mail: _Mail) -> Verdict | None:
    notice_text = "\n".join(_texts(mail.own_parts, ("text/plain", "text/html")))
    if '"notificationType"' in notice_text:
        ses = bn.ses_notification(notice_text)
        if isinstance(ses, bn.Complaint):
            return Verdict(Kind.COMPLAINT, ses.reason, recipient=ses.recipient,
                           original_message_id=ses.original_message_id)
        if isinstance(ses, bn.Bounce):
            return Verdict(Kind.BOUNCE, ses.reason, bounce=ses.severity, recipient=ses.recipient,
                           original_message_id=ses.original_message_id)
        if ses == "delivery":
            return Verdict(Kind.UNRELATED, "Amazon SES delivery notification")
    reports = [p for p in mail.parts
               if p.get_content_type() == "text/x-delivery-status"]
    blocks = [block for p in reports for block in bn.dsn_fields(p)]
    failures = bn.failures_from_blocks(blocks)
    if not failures and bn.delivered(blocks):
        return Verdict(Kind.UNRELATED, "delivery report: delivered or relayed")
    if not (reports or _bounce_like(mail) or _returns_message(mail, notice_text)):
        return None
    return _bounce_verdict(mail, failures, notice_text)


def _bounce_like(mail: _Mail) -> bool:
    """From a mail system, or a failure subject on machine-sent mail (not a person's)."""
    if any(mark in mail.from_header.lower() for mark in bn.BOUNCE_SENDERS):
        return True
    if not bn.BOUNCE_SUBJECT_RE.search(mail.subject):
        return False
    machine = (header(mail.msg, "Return-Path").strip() == "<>"
               or header(mail.msg, "Auto-Submitted").lower() not in ("", "no"))
    return machine or _attaches_message(mail)


def _attaches_message(mail: _Mail) -> bool:
    return any(p.get_content_type() in ("message/rfc822", "text/rfc822-headers")
               for p in mail.own_parts)


def _returns_message(mail: _Mail, notice_text: str) -> bool:
    """A notice that attaches a message and says it could not be delivered."""
    return (_attaches_message(mail)
            and bn.FAILURE_TEXT_RE.search(bn.notice_part(notice_text)) is not None)


def _bounce_verdict(mail: _Mail, failures: list[bn.Failure], notice_text: str) -> Verdict:
    notice = bn.notice_part(notice_text)
    if failures:
        failure = bn.worst(failures)
        reason = f"{bn.Evidence.DSN} {bn.describe(failure)}"
    else:
        failure = bn.text_failure(notice)
        detail = failure.status or failure.diagnostic or failure.action
        reason = f"{bn.Evidence.VENDOR} from {mail.sender or 'unknown sender'}: {detail}"
    recipient = failure.recipient
    if recipient is None:
        recipient, _ = bn.flufl_recipient(mail.msg)
    if recipient is None:
        recipient = bn.notice_recipient(notice, [mail.sender or ""])
    full_text = "\n".join(_texts(mail.parts, ("text/plain",)))
    return Verdict(Kind.BOUNCE, reason, bounce=failure.severity, recipient=recipient,
                   original_message_id=bn.original_message_id(mail.parts, full_text))


# --- lists, auto-replies ---------------------------------------------------------------


def _mailing_list(mail: _Mail) -> Verdict | None:
    for name in ("List-Id", "List-Post", "X-MLServer", "X-ML-Name", "X-Mailing-List"):
        if mail.msg.get(name) is not None:
            return Verdict(Kind.UNRELATED, f"mailing list ({name})")
    precedence = header(mail.msg, "Precedence").lower()
    if precedence == "list":
        return Verdict(Kind.UNRELATED, "mailing list (Precedence: list)")
    submitted = header(mail.msg, "Auto-Submitted").lower()
    if mail.msg.get("List-Unsubscribe") is not None and submitted in ("", "no"):
        return Verdict(Kind.UNRELATED, "newsletter (List-Unsubscribe)")
    return None


_AUTO_SUBJECT_RE = re.compile(
    r"^\W*(?:automatic reply|auto(?:matic)?[- ]?(?:reply|response|antwort)|autoreply|"
    r"out of (?:the )?office|abwesenheitsnotiz|automatische antwort|r[ée]ponse automatique|"
    r"respuesta autom[aá]tica|risposta automatica|automatisch antwoord|自動応答|自動返信)",
    re.IGNORECASE,
)


def _auto_headers(msg: Message) -> str | None:
    submitted = header(msg, "Auto-Submitted").lower()
    if submitted and submitted.split(";")[0].strip() != "no":
        return f"Auto-Submitted: {submitted.split(';')[0].strip()}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        if header(msg, name):
            return f"{name} header"
    precedence = header(msg, "Precedence").lower()
    if precedence in ("auto_reply", "bulk", "junk"):
        return f"Precedence: {precedence}"
    return None


def _auto_reply(mail: _Mail, now: datetime | None) -> Verdict | None:
    why = _auto_headers(mail.msg)
    if why is None and _AUTO_SUBJECT_RE.search(mail.subject):
        why = f"out-of-office subject {mail.subject[:60]!r}"
    if why is None:
        return None
    text = f"{mail.subject}\n{new_text(_body(mail))}"
    return Verdict(Kind.AUTO_REPLY, why, return_date=return_date(text, now))


# --- the human's own words -------------------------------------------------------------


def _body(mail: _Mail) -> str:
    plain = _texts(mail.own_parts, ("text/plain",))
    if plain:
        return plain[0]
    markup = _texts(mail.own_parts, ("text/html",))
    return html_to_text(markup[0]) if markup else ""


def html_to_text(markup: str) -> str:
    """Rough text of an HTML body without its quoted history."""
    markup = re.sub(r"(?is)<(?:div|span)[^>]*(?:gmail_quote|divRplyFwdMsg|appendonsend|"
                    r"moz-cite-prefix)[^>]*>.*", "", markup)
    markup = re.sub(r"(?is)<blockquote.*?</blockquote>", "", markup)
    markup = re.sub(r"(?is)<(script|style)[^>]*>.*?</\1>", "", markup)
    markup = re.sub(r"(?i)<br\s*/?>|</(?:p|div|li|tr|h\d)>", "\n", markup)
    return html.unescape(re.sub(r"<[^>]{0,2000}>", "", markup))


_WROTE_RE = re.compile(
    r"(?:wrote|schrieb|a écrit|escribió|ha scritto|skrev|schreef|napisał|написал|"
    r"のメッセージ|は書きました)\s*[:：]?\s*$|<[^<>\s]+@[^<>\s]+>\s*[:：]\s*$",
    re.IGNORECASE,
)
_ATTRIBUTION_RE = re.compile(r"^\s*(?:on|am|le|el|il|op|den)\s.*(?:\d|@)", re.IGNORECASE)
_ORIGINAL_RE = re.compile(
    r"^\s*(?:-{2,}\s*(?:original message|ursprüngliche nachricht|message d'origine|"
    r"mensaje original|messaggio originale|forwarded message)\s*-{2,}|_{10,})\s*$",
    re.IGNORECASE,
)
_OUTLOOK_FROM_RE = re.compile(r"^\s*\*?(?:from|von|de|da|van|差出人)\s*\*?\s*[:：]", re.IGNORECASE)
_OUTLOOK_SENT_RE = re.compile(
    r"^\s*\*?(?:sent|date|gesendet|datum|envoyé|enviado(?: el)?|fecha|inviato|"
    r"verzonden|送信日時)\s*\*?\s*[:：]", re.IGNORECASE)
_FOOTER_RE = re.compile(r"unsubscribe|opt[- ]out|abmelden|désinscri|darse de baja",
                        re.IGNORECASE)


def new_text(body: str) -> str:
    """What the sender wrote now: quoted history, signatures and our footer removed."""
    lines = body[:MAX_TEXT_CHARS].splitlines()
    kept: list[str] = []
    for index, line in enumerate(lines):
        if _starts_history(lines, index):
            kept = _drop_attribution(kept)
            break
        if line.rstrip() == "--":
            break
        if line.lstrip().startswith(">"):
            continue
        if _FOOTER_RE.search(line) and re.search(r"https?://|www\.|<mailto:", line, re.I):
            continue
        kept.append(line)
    return "\n".join(kept).strip()


def _drop_attribution(kept: list[str]) -> list[str]:
    """Drop the first half of an "On <date>, <name> <addr>\nwrote:" line wrapped in two."""
    while kept and not kept[-1].strip():
        kept.pop()
    if kept and _ATTRIBUTION_RE.match(kept[-1]):
        kept.pop()
    return kept


def _starts_history(lines: list[str], index: int) -> bool:
    line = lines[index]
    if _ORIGINAL_RE.match(line) or _WROTE_RE.search(line):
        return True
    if _OUTLOOK_FROM_RE.match(line):
        return any(_OUTLOOK_SENT_RE.match(after) for after in lines[index + 1:index + 4])
    return False


_UNSUBSCRIBE_RE = re.compile(
    r"\bunsubscribe\b|\bremove (?:me|my (?:e-?mail|address))\b|\btake me off\b|"
    r"\bopt(?:[- ])?(?:me )?out\b|"
    r"\bstop (?:e-?mailing|sending|contacting|writing)\b|\bdo not (?:e-?mail|contact) me\b|"
    r"\bdon'?t (?:e-?mail|contact) me\b|\bno more e-?mails?\b|\babmelden\b|\babbestellen\b|"
    r"d[ée]sabonner|d[ée]sinscri|\bdarme de baja\b|\bdar(?:me|se)? de baja\b|配信停止",
    re.IGNORECASE,
)
_STOP_RE = re.compile(r"^\W*(?:stop|unsubscribe|remove|remove me)\W*$", re.IGNORECASE)


def _unsubscribe(mail: _Mail) -> Verdict | None:
    subject = bare_subject(mail.subject)
    if _STOP_RE.match(subject):
        return Verdict(Kind.UNSUBSCRIBE, f"unsubscribe request in the subject {subject!r}")
    text = new_text(_body(mail))
    first = next((line for line in text.splitlines() if line.strip()), "")
    if _STOP_RE.match(first):
        return Verdict(Kind.UNSUBSCRIBE, f"unsubscribe request {first.strip()[:40]!r}")
    match = _UNSUBSCRIBE_RE.search(text)
    if match is not None:
        return Verdict(Kind.UNSUBSCRIBE, f"unsubscribe request {match.group(0)!r}")
    return None


# --- return dates ----------------------------------------------------------------------

_MONTHS = {
    name: number
    for number, names in enumerate((
        "january jan januar jänner janvier enero gennaio",
        "february feb februar février fevrier febrero febbraio",
        "march mar märz maerz mars marzo",
        "april apr avril abril aprile",
        "may mai mayo maggio",
        "june jun juni juin junio giugno",
        "july jul juli juillet julio luglio",
        "august aug août aout agosto",
        "september sep sept septembre septiembre setiembre settembre",
        "october oct oktober octobre octubre ottobre",
        "november nov novembre noviembre",
        "december dec dezember décembre decembre diciembre dicembre",
    ), start=1)
    for name in names.split()
}
_WEEKDAYS = {
    name: number
    for number, names in enumerate((
        "monday mon montag lundi lunes", "tuesday tue tues dienstag mardi martes",
        "wednesday wed mittwoch mercredi miércoles miercoles",
        "thursday thu thurs donnerstag jeudi jueves", "friday fri freitag vendredi viernes",
        "saturday sat samstag samedi sábado sabado", "sunday sun sonntag dimanche domingo",
    ))
    for name in names.split()
}
_MONTH_NAMES = "|".join(sorted(map(re.escape, _MONTHS), key=len, reverse=True))
_WEEKDAY = "(?:" + "|".join(sorted(map(re.escape, _WEEKDAYS), key=len, reverse=True)) + ")"
_FULL_WEEKDAY = "(?:" + "|".join(name for name in _WEEKDAYS if len(name) > 4) + ")"
_TRIGGER = (r"(?:\bback\b|\breturn(?:ing|s)?\b|\buntil\b|\btill\b|\bthrough\b|\bthru\b|"
            r"zurück|\bbis\b|\bwieder\b|retour|jusqu|\bhasta\b|\bregres\w*|\bvuelvo\b)")
_DATE_FORMS = (
    r"(?P<iso>(?P<y1>\d{4})[-/](?P<m1>\d{1,2})[-/](?P<d1>\d{1,2}))",
    r"(?P<dotted>(?P<d2>\d{1,2})\.(?P<m2>\d{1,2})\.(?P<y2>\d{4}|\d{2})?)",
    rf"(?:{_WEEKDAY},?\s+)?(?P<month>{_MONTH_NAMES})\.?\s+(?P<d3>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(?P<y3>\d{{4}}))?",
    rf"(?:{_WEEKDAY},?\s+)?(?P<d4>\d{{1,2}})(?:st|nd|rd|th|er|\.|º)?\s+(?:of\s+|de\s+)?"
    rf"(?P<month4>{_MONTH_NAMES})\b\.?(?:,?\s+(?:de\s+)?(?P<y4>\d{{4}}))?",
    rf"(?P<weekday>{_FULL_WEEKDAY})\b",
    r"(?P<tomorrow>tomorrow|morgen|demain|mañana)",
)
_RETURN_RE = re.compile(
    rf"{_TRIGGER}[^.!?\n]{{0,40}}?(?:{'|'.join(_DATE_FORMS)})", re.IGNORECASE)


def return_date(text: str, now: datetime | None) -> date | None:
    """The date the sender says they are back, or None when unsure."""
    for match in _RETURN_RE.finditer(text[:5_000]):
        try:
            found = _date_of(match, now)
        except ValueError:
            found = None
        if found is not None:
            return found
    return None


def _date_of(match: re.Match[str], now: datetime | None) -> date | None:
    groups = match.groupdict()
    if groups["iso"]:
        return date(int(groups["y1"]), int(groups["m1"]), int(groups["d1"]))
    if groups["dotted"]:
        return _with_year(groups["y2"], int(groups["m2"]), int(groups["d2"]), now)
    if groups["month"]:
        return _with_year(groups["y3"], _MONTHS[groups["month"].lower()], int(groups["d3"]), now)
    if groups["month4"]:
        return _with_year(groups["y4"], _MONTHS[groups["month4"].lower()], int(groups["d4"]), now)
    if now is None:
        return None
    if groups["weekday"]:
        ahead = (_WEEKDAYS[groups["weekday"].lower()] - now.weekday() - 1) % 7 + 1
        return now.date() + timedelta(days=ahead)
    return now.date() + timedelta(days=1)


def _with_year(year: str | None, month: int, day: int, now: datetime | None) -> date | None:
    if year:
        return date(int(year) + (2000 if len(year) == 2 else 0), month, day)
    if now is None:
        return None
    found = date(now.year, month, day)
    # A date well in the past means next year; a few weeks back is a stale notice, not next year.
    if found < now.date() - timedelta(days=30):
        found = date(now.year + 1, month, day)
    return found
