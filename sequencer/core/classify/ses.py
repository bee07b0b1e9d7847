"""Amazon SES notifications mailed through SNS: bounces, complaints and deliveries.

The body is JSON: either the SES notification itself (an SNS "email" subscription) or
the SNS envelope whose ``Message`` field is that notification as a string (an
"email-json" subscription). Both are parsed with the stdlib ``json`` module, bounded;
``notificationType`` (or ``eventType`` for SES event publishing) says what it is. A
bounce's cause and hard or soft come from the first bounced recipient's
``diagnosticCode`` and ``status`` like any other failure; ``bounceType: Transient`` is
always soft, and a ``Permanent`` bounce without a diagnostic is hard only when SES says
the address does not exist (``bounceSubType: NoEmail``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from sequencer.core.classify.bounce import Bounce, Delivered
from sequencer.core.classify.causes import cause_of, severity_of
from sequencer.core.classify.complaint import Complaint

MAX_JSON_CHARS = 200_000

_START_RE = re.compile(r'\{\s*"(?:Type|notificationType|eventType)"\s*:')
_SUBTYPE_CAUSE = {"noemail": "userunknown", "suppressed": "suppressed",
                  "onaccountsuppressionlist": "suppressed", "mailboxfull": "mailboxfull",
                  "messagetoolarge": "mesgtoobig", "contentrejected": "contenterror",
                  "attachmentrejected": "contenterror", "unsubscribedrecipient": "suppressed"}


def notification(text: str) -> Bounce | Complaint | Delivered | None:
    """The SES notification in ``text`` (a message body), if it holds one."""
    data = _json_in(text)
    if data is None:
        return None
    if data.get("Type") == "Notification" and isinstance(data.get("Message"), str):
        data = _json_in(data["Message"])
        if data is None:
            return None
    kind = data.get("notificationType") or data.get("eventType")
    message_id = _message_id(data.get("mail"))
    if kind == "Complaint":
        people = _first_address(data.get("complaint"), "complainedRecipients")
        return Complaint("Amazon SES complaint notification", people, message_id)
    if kind == "Delivery":
        return Delivered("Amazon SES delivery notification", message_id)
    if kind != "Bounce":
        return None
    return _bounce(data.get("bounce"), message_id)


def _bounce(section: object, message_id: str | None) -> Bounce:
    bounce: dict[str, Any] = section if isinstance(section, dict) else {}
    kind = str(bounce.get("bounceType", "")) or "unknown"
    subtype = str(bounce.get("bounceSubType", ""))
    people = bounce.get("bouncedRecipients")
    first: dict[str, Any] = people[0] if isinstance(people, list) and people \
        and isinstance(people[0], dict) else {}
    status = str(first.get("status", ""))
    diagnostic = str(first.get("diagnosticCode", ""))
    if diagnostic or status:
        cause = cause_of(status, diagnostic, str(first.get("action", "")), "", True)
    else:
        cause = _SUBTYPE_CAUSE.get(subtype.lower(), "onhold")
    severity = "soft" if kind != "Permanent" else severity_of(cause, status, diagnostic)
    address = first.get("emailAddress")
    reason = f"Amazon SES notification, bounceType: {kind}"
    if subtype:
        reason += f"/{subtype}"
    return Bounce(severity, cause, f"{reason}, cause: {cause}",
                  address.lower() if isinstance(address, str) else None, message_id)


def _json_in(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` that looks like SNS or SES, parsed (bounded)."""
    match = _START_RE.search(text[:MAX_JSON_CHARS])
    if match is None:
        return None
    chunk = text[match.start():match.start() + MAX_JSON_CHARS]
    for candidate in (chunk, chunk.replace("!\n", "").replace("\n", "")):
        try:
            data = json.JSONDecoder().raw_decode(candidate)[0]
        except (ValueError, RecursionError):
            continue
        return data if isinstance(data, dict) else None
    return None


def _first_address(section: object, key: str) -> str | None:
    if not isinstance(section, dict):
        return None
    people = section.get(key)
    if isinstance(people, list) and people and isinstance(people[0], dict):
        address = people[0].get("emailAddress")
        return address.lower() if isinstance(address, str) else None
    return None


def _message_id(mail: object) -> str | None:
    """Our Message-ID from the notification's copy of the headers."""
    if not isinstance(mail, dict):
        return None
    for header in mail.get("headers") or ():
        if isinstance(header, dict) and str(header.get("name", "")).lower() == "message-id":
            value = str(header.get("value", "")).strip()
            return value if value.startswith("<") else f"<{value}>"
    common = mail.get("commonHeaders")
    if isinstance(common, dict) and isinstance(common.get("messageId"), str):
        value = common["messageId"].strip()
        return value if value.startswith("<") else f"<{value}>"
    return None
