"""Bounce and complaint reading: RFC 3464 DSNs, RFC 5965 ARF reports and vendor formats.

Pure helpers for ``classify``: they take an already parsed message and the text of its
parts and never raise on what they find inside (the caller still guards every call).
``flufl.bounce`` is one detector among several: it finds recipients in many vendor
formats, our own rules decide whether a notice is a bounce and whether it is hard or soft.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.message import Message
from enum import StrEnum
from typing import Literal

from flufl.bounce import all_failures

log = logging.getLogger(__name__)

Severity = Literal["hard", "soft"]

MAX_JSON_CHARS = 200_000
MAX_NOTICE_CHARS = 20_000

ADDRESS_RE = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9-]+)+"
)
_ENHANCED_RE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
_SMTP_CODE_RE = re.compile(r"(?:^|[\s:(\[\"'])([45])[0-9]{2}(?=[\s-])", re.MULTILINE)
_FIELD_RE = re.compile(r"^([A-Za-z-]+)[ \t]*:[ \t]*(.*)$")
_MESSAGE_ID_RE = re.compile(r"^Message-ID:[ \t]*(<[^>\s]{1,500}>)", re.IGNORECASE | re.MULTILINE)

BOUNCE_SENDERS = ("mailer-daemon", "postmaster", "post_master", "mail delivery", "mmsc ndr")
BOUNCE_SUBJECT_RE = re.compile(
    r"undeliver|undelivered|delivery (status notification|failure|failed|has failed|problem)"
    r"|mail delivery (failed|failure|system)|returned mail|failure notice|mail system error"
    r"|could not be delivered|delivery notification|non[- ]?delivery|rejected:|"
    r"warning: could not send|delayed mail|error sending|there was an error sending"
    r"|mail could not be delivered|nondeliverable|delivery status notification"
    r"|returned to sender|postmaster notify|unzustellbar|non remis|delivery failure"
    r"|メールエラー|エラーメール|配送エラー|送信エラー|配信エラー",
    re.IGNORECASE,
)
_WARNING_RE = re.compile(
    r"has not yet been delivered|not been delivered yet|warning message only|"
    r"delivery (?:to the following recipients? )?(?:has been|is) delayed|"
    r"will (?:continue to )?(?:be )?retr(?:y|ied)|delivery attempts will continue|"
    r"still trying|this is a warning|delayed mail|message delayed",
    re.IGNORECASE,
)
_EXPIRY_RE = re.compile(
    r"in the queue too long|queue time expired|retry time(?:out)? (?:exceeded|expired)|"
    r"(?<![\w.@-])expired(?![\w@.-])|deferred|timed? ?out|too many (?:retries|hops)",
    re.IGNORECASE,
)
_ORIGINAL_MARKERS_RE = re.compile(
    r"^[ \t]*(?:-{2,}.{0,20}(?:original|copy of|unsent|undelivered|returned|message follows|"
    r"headers? follow)|below (?:this line )?is a copy|original (?:message|mail) (?:follows|as "
    r"follows)|the original message(?: headers?)? (?:follows|is attached|was))",
    re.IGNORECASE | re.MULTILINE,
)
FAILURE_TEXT_RE = re.compile(
    r"could not be delivered|couldn't be delivered|undeliverable|delivery (?:has )?failed|"
    r"was not delivered|user unknown|unknown user|no such user|mailbox (?:is )?full|"
    r"mailbox unavailable|送信できませんでした|配信できませんでした|届きませんでした",
    re.IGNORECASE,
)
_COMPLAINT_SUBJECT_RE = re.compile(r"complaint about message|abuse report", re.IGNORECASE)


class Evidence(StrEnum):
    """What made a message a bounce."""

    DSN = "RFC 3464"
    JSON = "Amazon SES notification"
    VENDOR = "bounce notice"


@dataclass(frozen=True)
class Failure:
    """One failed recipient read from a notice."""

    recipient: str | None
    action: str
    status: str
    diagnostic: str = ""

    @property
    def severity(self) -> Severity:
        return _severity_of(self.action, self.status, self.diagnostic)


@dataclass(frozen=True)
class Bounce:
    """What a bounce says: hard or soft, who failed, and why."""

    severity: Severity
    reason: str
    recipient: str | None = None
    original_message_id: str | None = None


@dataclass(frozen=True)
class Complaint:
    reason: str
    recipient: str | None = None
    original_message_id: str | None = None


def _severity_of(action: str, status: str, diagnostic: str) -> Severity:
    action = action.lower()
    if action in ("delayed", "expired"):
        return "soft"
    code = status_code(status) or status_code(diagnostic)
    if code is not None:
        return "soft" if code.startswith("4") else "hard"
    smtp = _SMTP_CODE_RE.search(diagnostic)
    if smtp is not None:
        return "soft" if smtp.group(1) == "4" else "hard"
    return "hard"


def status_code(text: str) -> str | None:
    """The first RFC 3463 enhanced status code (``5.1.1``) in ``text``, if any."""
    match = _ENHANCED_RE.search(text)
    return match.group(0) if match else None


def bare_address(value: str) -> str | None:
    """``rfc822; <A@B.example>`` -> ``a@b.example``."""
    match = ADDRESS_RE.search(value)
    return match.group(0).lower() if match else None


# --- RFC 3464 --------------------------------------------------------------------------


def _field_blocks(text: str) -> list[dict[str, str]]:
    """Split ``name: value`` blocks separated by blank lines (continuations folded)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
            current, last = {}, ""
        elif line[:1] in (" ", "\t") and last:
            current[last] += " " + line.strip()
        elif (match := _FIELD_RE.match(line)) is not None:
            last = match.group(1).lower()
            current.setdefault(last, match.group(2).strip())
    if current:
        blocks.append(current)
    return blocks


def dsn_fields(part: Message) -> list[dict[str, str]]:
    """The field blocks of a ``message/delivery-status`` part, however it was parsed."""
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks: list[dict[str, str]] = []
        for sub in payload:
            if isinstance(sub, Message):
                blocks.append({str(k).lower(): str(v).strip() for k, v in sub.raw_items()})
        return blocks
    if isinstance(payload, str):
        return _field_blocks(payload[:MAX_NOTICE_CHARS])
    return []


def delivered(blocks: Iterable[dict[str, str]]) -> bool:
    """Does a DSN report a success (delivered, relayed, expanded) for some recipient?"""
    return any(block.get("action", "").lower().startswith(("delivered", "relayed", "expanded"))
               for block in blocks)


def failures_from_blocks(blocks: Iterable[dict[str, str]]) -> list[Failure]:
    """Per-recipient failures (not delivered/relayed/expanded) from DSN field blocks."""
    failures: list[Failure] = []
    for block in blocks:
        action = block.get("action", "").split()[0].lower() if block.get("action") else ""
        status = block.get("status", "")
        diagnostic = block.get("diagnostic-code", "")
        if not (action or status or diagnostic):
            continue
        if action in ("delivered", "relayed", "expanded"):
            continue
        if not action and status.startswith("2"):
            continue
        who = block.get("final-recipient") or block.get("original-recipient") or ""
        failures.append(Failure(bare_address(who), action or "failed", status, diagnostic))
    return failures


def worst(failures: Sequence[Failure]) -> Failure:
    """The failure that decides the verdict: a hard one when there is one."""
    for failure in failures:
        if failure.severity == "hard":
            return failure
    return failures[0]


def describe(failure: Failure) -> str:
    parts = [f"Action: {failure.action}"]
    if failure.status:
        parts.append(f"Status: {failure.status.split()[0]}")
    return ", ".join(parts)


# --- Amazon SES JSON -------------------------------------------------------------------


def ses_notification(text: str) -> Bounce | Complaint | Literal["delivery"] | None:
    """Amazon SES's JSON notification (via SNS e-mail), when ``text`` holds one."""
    start = text.find('{"notificationType"')
    if start < 0:
        return None
    try:
        chunk = text[start:start + MAX_JSON_CHARS].replace("\n", "")
        data = json.JSONDecoder().raw_decode(chunk)[0]
    except ValueError:
        return None
    kind = data.get("notificationType")
    message_id = _ses_message_id(data.get("mail"))
    if kind == "Complaint":
        people = _ses_addresses(data.get("complaint"), "complainedRecipients")
        return Complaint("Amazon SES complaint notification", people, message_id)
    if kind != "Bounce":
        return "delivery" if kind == "Delivery" else None
    bounce = data.get("bounce")
    bounce_type = bounce.get("bounceType", "") if isinstance(bounce, dict) else ""
    severity: Severity = "hard" if bounce_type == "Permanent" else "soft"
    return Bounce(severity, f"Amazon SES notification, bounceType: {bounce_type or 'unknown'}",
                  _ses_addresses(bounce, "bouncedRecipients"), message_id)


def _ses_addresses(section: object, key: str) -> str | None:
    if not isinstance(section, dict):
        return None
    people = section.get(key)
    if isinstance(people, list) and people and isinstance(people[0], dict):
        address = people[0].get("emailAddress")
        return address.lower() if isinstance(address, str) else None
    return None


def _ses_message_id(mail: object) -> str | None:
    if not isinstance(mail, dict):
        return None
    for header in mail.get("headers") or ():
        if isinstance(header, dict) and str(header.get("name", "")).lower() == "message-id":
            value = str(header.get("value", "")).strip()
            return value if value.startswith("<") else f"<{value}>"
    return None


# --- Vendor formats --------------------------------------------------------------------


def notice_part(text: str) -> str:
    """The notice's own words: the text before the copy of the original message."""
    text = text[:MAX_NOTICE_CHARS * 5]
    match = _ORIGINAL_MARKERS_RE.search(text)
    head = text[: match.start()] if match and match.start() > 40 else text
    return head[:MAX_NOTICE_CHARS]


def text_failure(notice: str) -> Failure:
    """Hard or soft from the words of a notice that has no DSN fields."""
    if _WARNING_RE.search(notice):
        return Failure(None, "delayed", status_code(notice) or "", "warning notice")
    fields = failures_from_blocks(_field_blocks(notice))
    if fields:
        return worst(fields)
    code = status_code(_strip_benign(notice))
    if code is not None:
        return Failure(None, "failed", code)
    smtp = _SMTP_CODE_RE.search(notice)
    if smtp is not None:
        line = notice[smtp.start():].strip().splitlines()[0][:80]
        return Failure(None, "failed", "", line)
    if _EXPIRY_RE.search(notice):
        return Failure(None, "expired", "", "delivery expired")
    return Failure(None, "failed", "")


def _strip_benign(notice: str) -> str:
    """Drop ``2.x.x`` success codes so that the first code left is a failure's."""
    return re.sub(r"(?<![\d.])2\.\d{1,3}\.\d{1,3}", " ", notice)


def flufl_recipient(msg: Message) -> tuple[str | None, Severity | None]:
    """A failed recipient found by ``flufl.bounce``, and whether it called it permanent."""
    try:
        temporary, permanent = all_failures(msg)
    except Exception as err:  # noqa: BLE001 - a third-party detector must never break us
        log.debug("flufl.bounce failed on a message: %s", type(err).__name__)
        return None, None
    found: tuple[tuple[frozenset[bytes], Severity], ...] = ((permanent, "hard"),
                                                           (temporary, "soft"))
    for addresses, severity in found:
        for address in sorted(addresses):
            text = address.decode("utf-8", "replace") if isinstance(address, bytes) else address
            return bare_address(str(text)), severity
    return None, None


def notice_recipient(notice: str, exclude: Iterable[str]) -> str | None:
    """The first address in a notice that is not the sender's or a mail system's."""
    skip = {address.lower() for address in exclude}
    for match in ADDRESS_RE.finditer(notice):
        address = match.group(0).lower()
        local = address.split("@", 1)[0]
        if address in skip or local in ("mailer-daemon", "postmaster", "post_master"):
            continue
        return address
    return None


def original_message_id(parts: Sequence[Message], notice_text: str) -> str | None:
    """The Message-ID of the returned message: attached, or quoted in the notice text."""
    for part in parts:
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                value = inner[0].get("Message-ID")
                if value:
                    return str(value).strip()[:500] or None
        elif kind in ("text/rfc822-headers", "message/rfc822-headers"):
            payload = part.get_payload()
            if isinstance(payload, str) and (m := _MESSAGE_ID_RE.search(payload[:50_000])):
                return m.group(1)
    match = _MESSAGE_ID_RE.search(notice_text[:MAX_NOTICE_CHARS * 10])
    return match.group(1) if match else None


# --- Complaints (RFC 5965) -------------------------------------------------------------


def complaint_from(msg: Message, parts: Sequence[Message], subject: str) -> Complaint | None:
    """An ARF feedback report (or Hotmail's JMRP look-alike), if ``msg`` is one."""
    report = msg.get_param("report-type", header="content-type")
    feedback = next((p for p in parts if p.get_content_type() == "message/feedback-report"), None)
    is_arf = (msg.get_content_type() == "multipart/report"
              and str(report).lower() == "feedback-report") or feedback is not None
    inner = _attached_headers(parts)
    jmrp = inner is not None and "x-hmxmroriginalrecipient" in inner
    if not (is_arf or jmrp or (inner is not None and _COMPLAINT_SUBJECT_RE.search(subject))):
        return None
    fields = dsn_fields(feedback)[0] if feedback is not None and dsn_fields(feedback) else {}
    recipient = bare_address(fields.get("original-rcpt-to", ""))
    if recipient is None and inner is not None:
        recipient = bare_address(inner.get("x-hmxmroriginalrecipient", "") or inner.get("to", ""))
    feedback_type = fields.get("feedback-type", "abuse" if is_arf else "complaint")
    message_id = inner.get("message-id") if inner is not None else None
    label = "ARF feedback-report" if is_arf else "complaint report"
    return Complaint(f"{label} ({feedback_type})", recipient, message_id or None)


def _attached_headers(parts: Sequence[Message]) -> dict[str, str] | None:
    for part in parts:
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return {str(k).lower(): str(v).strip() for k, v in inner[0].raw_items()}
        elif kind in ("text/rfc822-headers", "message/rfc822-headers"):
            payload = part.get_payload()
            if isinstance(payload, str):
                blocks = _field_blocks(payload[:50_000])
                return blocks[0] if blocks else {}
    return None
