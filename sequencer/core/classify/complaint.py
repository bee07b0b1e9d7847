"""Spam complaints: RFC 5965 ARF feedback reports, and Hotmail's JMRP look-alike.

A complaint names the address that complained (``Original-Rcpt-To``, or the returned
message's ``To``) and the Message-ID of our message it reports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sequencer.core.classify.bounce import dsn_fields, returned_headers
from sequencer.core.classify.message import Mail, bare_address

_COMPLAINT_SUBJECT_RE = re.compile(r"complaint about message|abuse report", re.IGNORECASE)


@dataclass(frozen=True)
class Complaint:
    reason: str
    recipient: str | None = None
    original_message_id: str | None = None


def read(mail: Mail) -> Complaint | None:
    """The feedback report ``mail`` is, if it is one."""
    msg = mail.msg
    report = msg.get_param("report-type", header="content-type")
    feedback = next((p for p in mail.parts
                     if p.get_content_type() == "message/feedback-report"), None)
    is_arf = (msg.get_content_type() == "multipart/report"
              and str(report).lower() == "feedback-report") or feedback is not None
    inner = returned_headers(mail.parts)
    jmrp = inner is not None and "x-hmxmroriginalrecipient" in inner
    if not (is_arf or jmrp or (inner is not None and _COMPLAINT_SUBJECT_RE.search(mail.subject))):
        return None
    blocks = dsn_fields(feedback) if feedback is not None else []
    fields = blocks[0] if blocks else {}
    recipient = bare_address(fields.get("original-rcpt-to", ""))
    if recipient is None and inner is not None:
        recipient = bare_address(inner.get("x-hmxmroriginalrecipient", "") or inner.get("to", ""))
    feedback_type = fields.get("feedback-type", "abuse" if is_arf else "complaint")
    message_id = inner.get("message-id") if inner is not None else None
    label = "ARF feedback-report" if is_arf else "complaint report"
    return Complaint(f"{label} ({feedback_type})", recipient, message_id or None)
