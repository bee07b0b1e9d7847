"""Delivery-failure notices: RFC 3464 reports and the vendors' own prose.

``read`` says whether a message is a bounce, for whom, and why (the cause and hard or
soft come from ``causes``). A report's per-recipient fields decide where there are any;
a notice without them is read from its own words, the text before the copy of the
returned message. ``flufl.bounce`` (a well-kept detector of ~40 vendor formats) finds
the failed recipient where our reading does not; it never decides hard or soft.

A message is only a bounce with evidence of a failure: a report with a failed
recipient, or a notice from a mail system whose words or codes say something failed.
A postmaster's ordinary note, a success report (2.x.x, ``Action: delivered``) and a
warning that delivery is still being retried are not failures (``Delayed``,
``Delivered``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.message import Message
from functools import cached_property

from flufl.bounce import all_failures

from sequencer.core.classify.causes import (
    Severity,
    about,
    cause_of,
    command_of,
    says_address_unknown,
    severity_of,
    status_code,
)
from sequencer.core.classify.message import RETURNED_TYPES, Mail, addresses, bare_address

MAX_NOTICE_CHARS = 20_000

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
    r"still (?:trying|being retried)|this is a warning|delayed mail|message delayed|"
    r"(?:will|shall) continue to (?:try|attempt)|has been postponed|delivery warning",
    re.IGNORECASE,
)
_ORIGINAL_MARKERS_RE = re.compile(
    r"^[ \t]*(?:-{2,}.{0,30}(?:original|copy of|unsent|undelivered|returned|message follows|"
    r"headers? follow)|[-=* ]*below (?:this line )?is a copy|original (?:message|mail) "
    r"(?:follows|as follows)|the original message(?: headers?)? (?:follows|is attached|was)|"
    r"original message headers|message headers follow|[-=* ]*returned message|"
    r"(?:received|return-path|dkim-signature|received-spf|authentication-results|"
    r"arc-seal|x-original-to|delivered-to):[ \t])",
    re.IGNORECASE | re.MULTILINE,
)
FAILURE_TEXT_RE = re.compile(
    r"could not be delivered|couldn't be delivered|undeliverable|delivery (?:has )?failed|"
    r"was not delivered|user unknown|unknown user|no such user|mailbox (?:is )?full|"
    r"mailbox unavailable|送信できませんでした|配信できませんでした|届きませんでした",
    re.IGNORECASE,
)
_FAILED_WORDS_RE = re.compile(
    r"fail|postpone|warning|quota|full|undeliver|(?:unable|could ?n[o']t|cannot|can't) "
    r"(?:be )?deliver|did not reach|"
    r"not (?:been )?delivered|reject|returned|error|unknown|invalid|no such|no valid|bounce|"
    r"exceed|expired|denied|refused|blocked|delay|not found|does not exist|"
    r"配信|送信できません|届きません|不明|エラー|не может быть доставлено|недоставлен",
    re.IGNORECASE,
)
# A notice written by a system that is not named like one (a virus scanner, a gateway).
_NOTICE_TEXT_RE = re.compile(
    r"(?:your |the |this )?message\b.{0,80}?\b(?:could ?n[o']t|can ?not|was ?n[o']t|has not been)"
    r" (?:be )?deliver(?:ed)? to|(?:could ?n[o']t|unable to|can ?not) deliver (?:your |the |this )?"
    r"message to|did not reach the following recipient|delivery to the following recipients? "
    r"(?:failed|has been delayed)|n'a pas pu [êe]tre d[ée]livr[ée]", re.IGNORECASE | re.DOTALL)
_ERROR_CODE_RE = re.compile(r"(?<![\d.])[45]\.\d{1,3}\.\d{1,3}(?![\d.])|(?:^|[\s:(\[])[45]\d\d[ -]")
_SUCCESS = ("delivered", "deliverable", "relayed", "expanded")
_BENIGN_RE = re.compile(r"(?<![\d.])2\.\d{1,3}\.\d{1,3}")


@dataclass(frozen=True)
class Failure:
    """One failed recipient read from a notice."""

    recipient: str | None
    action: str
    status: str
    diagnostic: str = ""
    command: str = ""
    reported: bool = False  # read from RFC 3464 fields, not from a notice's prose

    @cached_property
    def cause(self) -> str:
        return cause_of(self.status, self.diagnostic, self.action, self.command, self.reported)

    @cached_property
    def severity(self) -> Severity:
        return severity_of(self.cause, self.status, self.diagnostic, self.action)


@dataclass(frozen=True)
class Bounce:
    """What a bounce says: hard or soft, why, who failed, and which message of ours."""

    severity: Severity
    cause: str
    reason: str
    recipient: str | None = None
    original_message_id: str | None = None
    delayed: bool = False  # a warning: delivery is still being retried, nothing failed yet


@dataclass(frozen=True)
class Delivered:
    """A success report (``Action: delivered``/``relayed``/``expanded``, 2.x.x)."""

    reason: str
    original_message_id: str | None = None


def read(mail: Mail) -> Bounce | Delivered | None:
    """The bounce (or success report) ``mail`` is, or None when it is neither."""
    notice = notice_part("\n".join(mail.texts("text/plain", "text/html")))
    reports = [p for p in mail.parts if p.get_content_type() == "text/x-delivery-status"]
    blocks = [block for p in reports for block in dsn_fields(p)]
    failures = failures_from_blocks(blocks, notice)
    full_text = "\n".join(mail.texts("text/plain", attached=True))
    if not failures and delivered(blocks):
        return Delivered("delivery report: delivered or relayed",
                         original_message_id(mail.parts, full_text))
    if not reports and not (_returns_message(mail, notice) or _unknown_address_reply(mail, notice)
                            or (from_mail_system(mail) and _says_failed(mail, notice))
                            or _notice_by_another_name(mail, notice)):
        return None
    if failures:
        failure = failures[0]
        reason = f"RFC 3464 {describe(failure)}"
    else:
        failure = text_failure(notice)
        detail = failure.status or failure.action
        reason = f"bounce notice from {mail.sender or 'unknown sender'}: {detail}"
    recipient = failure.recipient
    if recipient is None:
        recipient = flufl_recipient(mail.msg)
    if recipient is None:
        recipient = notice_recipient(notice, [mail.sender or ""])
    cause = failure.cause
    return Bounce(failure.severity, cause, f"{reason}, cause: {cause}", recipient,
                  original_message_id(mail.parts, full_text),
                  delayed=failure.action == "delayed")


def from_mail_system(mail: Mail) -> bool:
    """From a mail system, or a failure subject on machine-sent mail (not a person's)."""
    if any(mark in mail.from_header.lower() for mark in BOUNCE_SENDERS):
        return True
    if not BOUNCE_SUBJECT_RE.search(mail.subject):
        return False
    machine = (mail.header("Return-Path").strip() == "<>"
               or mail.header("Auto-Submitted").lower() not in ("", "no"))
    return machine or mail.attaches(*RETURNED_TYPES)


def _returns_message(mail: Mail, notice: str) -> bool:
    """A notice that attaches a message and says it could not be delivered."""
    return mail.attaches(*RETURNED_TYPES) and FAILURE_TEXT_RE.search(notice) is not None


def _says_failed(mail: Mail, notice: str) -> bool:
    """Evidence of a failure: a failure subject, failure words, a warning or an error code."""
    return (BOUNCE_SUBJECT_RE.search(mail.subject) is not None
            or _FAILED_WORDS_RE.search(mail.subject) is not None
            or _FAILED_WORDS_RE.search(notice) is not None
            or _ERROR_CODE_RE.search(notice) is not None)


def _notice_by_another_name(mail: Mail, notice: str) -> bool:
    """A failure subject and "your message could not be delivered to" in the text."""
    return (BOUNCE_SUBJECT_RE.search(mail.subject) is not None
            and _NOTICE_TEXT_RE.search(notice[:5_000]) is not None)


def _unknown_address_reply(mail: Mail, notice: str) -> bool:
    """An automatic reply (no report) saying the address is not a valid user there."""
    submitted = mail.header("Auto-Submitted").lower()
    automatic = submitted not in ("", "no") or bool(mail.header("X-Autoreply"))
    return automatic and says_address_unknown(notice)


# --- RFC 3464 --------------------------------------------------------------------------


def field_blocks(text: str) -> list[dict[str, str]]:
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
        return field_blocks(payload[:MAX_NOTICE_CHARS])
    return []


def delivered(blocks: Iterable[dict[str, str]]) -> bool:
    """Does a DSN report a success (delivered, relayed, expanded, 2.x.x) for a recipient?"""
    return any(block.get("action", "").lower().startswith(_SUCCESS)
               or block.get("status", "").startswith("2.") for block in blocks)


def failures_from_blocks(blocks: Iterable[dict[str, str]], context: str = "") -> list[Failure]:
    """Per-recipient failures (not delivered/relayed/expanded) from DSN field blocks.

    ``context`` is the notice's own text: it gives the refused SMTP command when the
    ``Diagnostic-Code`` does not, and the words of a failure that has no diagnostic.
    """
    failures: list[Failure] = []
    for block in blocks:
        action = block.get("action", "").split()[0].lower() if block.get("action") else ""
        status = block.get("status", "")
        diagnostic = block.get("diagnostic-code", "")
        if not (action or status or diagnostic):
            continue
        if action.startswith(_SUCCESS) or status.startswith("2"):
            continue
        who = block.get("final-recipient") or block.get("original-recipient") or ""
        recipient = bare_address(who)
        near = about(context, recipient)
        command = command_of(diagnostic) or command_of(near)
        words = diagnostic if diagnostic.strip(" ;").lower() not in ("", "smtp") else near
        failures.append(Failure(recipient, action or "failed", status, words, command, True))
    return failures


def describe(failure: Failure) -> str:
    parts = [f"Action: {failure.action}"]
    if failure.status:
        parts.append(f"Status: {failure.status.split()[0]}")
    return ", ".join(parts)


# --- the vendors' prose ----------------------------------------------------------------


def notice_part(text: str) -> str:
    """The notice's own words: the text before the copy of the original message."""
    text = text[:MAX_NOTICE_CHARS * 5]
    match = _ORIGINAL_MARKERS_RE.search(text)
    head = text[: match.start()] if match and match.start() > 40 else text
    return head[:MAX_NOTICE_CHARS]


def text_failure(notice: str) -> Failure:
    """The failure a notice without DSN fields describes, from its words."""
    if _WARNING_RE.search(notice):
        return Failure(None, "delayed", status_code(_BENIGN_RE.sub(" ", notice)) or "",
                       notice, command_of(notice))
    fields = failures_from_blocks(field_blocks(notice), notice)
    if fields:
        return fields[0]
    near = about(notice)
    return Failure(None, "failed", status_code(_BENIGN_RE.sub(" ", near)) or "", near,
                   command_of(near) or command_of(notice))


def flufl_recipient(msg: Message) -> str | None:
    """A failed recipient found by ``flufl.bounce``, permanent failures first."""
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # noqa: BLE001 - a third-party detector must never break us
        return None
    for found in (permanent, temporary):
        for address in sorted(found):
            text = address.decode("utf-8", "replace") if isinstance(address, bytes) else address
            return bare_address(str(text))
    return None


def notice_recipient(notice: str, exclude: Iterable[str]) -> str | None:
    """The first address in a notice that is not the sender's or a mail system's."""
    skip = {address.lower() for address in exclude}
    for address in addresses(notice):
        local = address.split("@", 1)[0]
        if address in skip or local in ("mailer-daemon", "postmaster", "post_master"):
            continue
        return address
    return None


def original_message_id(parts: Sequence[Message], notice_text: str) -> str | None:
    """The Message-ID of the returned message: attached, or quoted in the notice text."""
    inner = returned_headers(parts)
    if inner is not None and inner.get("message-id"):
        return inner["message-id"][:500]
    match = _MESSAGE_ID_RE.search(notice_text[:MAX_NOTICE_CHARS * 10])
    return match.group(1) if match else None


def returned_headers(parts: Sequence[Message]) -> dict[str, str] | None:
    """The header fields of the message a notice returns (attached whole or headers only)."""
    for part in parts:
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return {str(k).lower(): str(v).strip() for k, v in inner[0].raw_items()}
        elif kind in ("text/rfc822-headers", "message/rfc822-headers"):
            payload = part.get_payload()
            if isinstance(payload, str):
                blocks = field_blocks(payload[:50_000])
                return blocks[0] if blocks else {}
    return None

