"""One inbound message -> one ``Verdict``: what it is, why, and what the effect side needs.

The order decides: our own mail, then complaints, bounces (and success reports), list
traffic, automatic replies, and only then a person's reply or unsubscribe request.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import StrEnum

from sequencer.core.classify import automail, bounce, complaint, ses
from sequencer.core.classify.causes import Severity
from sequencer.core.classify.dates import return_date
from sequencer.core.classify.message import MAX_BYTES, Mail, message_id, parse, references
from sequencer.core.classify.replytext import (
    body,
    new_text,
    one_tap_unsubscribe,
    unsubscribe_request,
)


class Kind(StrEnum):
    REPLY = "reply"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    UNRELATED = "unrelated"


@dataclass(frozen=True)
class Verdict:
    """How the watcher reads one inbound message.

    ``subkind`` refines the kind (``failure``/``delayed`` for a bounce; ``out_of_office``,
    ``mdn``, ``challenge_response``, ``auto_generated``, ``delivery_success`` for an
    auto-reply). ``cause`` is a bounce's sisimai reason name. ``recipient`` and
    ``original_message_id`` come from inside a bounce or complaint (who failed, which
    message of ours); ``sender``, ``message_id`` and ``references`` from the message's own
    header, for matching and for proof.
    """

    kind: Kind
    reason: str
    bounce: Severity | None = None
    cause: str | None = None
    subkind: str | None = None
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
            "subkind": self.subkind,
            "reason": self.reason,
            "bounce": self.bounce,
            "cause": self.cause,
            "recipient": self.recipient,
            "original_message_id": self.original_message_id,
            "return_date": self.return_date.isoformat() if self.return_date else None,
            "sender": self.sender,
            "message_id": self.message_id,
            "references": list(self.references),
        }


def classify(raw: bytes, *, own_addresses: frozenset[str] = frozenset(),
             now: datetime | None = None, max_bytes: int = MAX_BYTES) -> Verdict:
    """Read one raw message. Never raises: unreadable mail is ``unrelated`` with the reason.

    ``own_addresses`` are our mailboxes' addresses (their mail is never a reply); ``now``
    resolves return dates without a year ("back Monday") and rules out past ones.
    """
    try:
        own = frozenset(address.lower() for address in own_addresses)
        mail = parse(raw, max_bytes)
        if mail is None:
            return Verdict(Kind.UNRELATED, "unparseable: no header fields")
        return replace(_decide(mail, own, now), sender=mail.sender,
                       message_id=message_id(mail.msg.get("Message-ID")),
                       references=references(mail.msg))
    except Exception as err:  # noqa: BLE001 - hostile mail must never stop the watcher
        return Verdict(Kind.UNRELATED, f"unparseable: {type(err).__name__}")


def _decide(mail: Mail, own: frozenset[str], now: datetime | None) -> Verdict:
    if mail.sender is not None and mail.sender in own:
        return Verdict(Kind.UNRELATED, "from our own address")
    opening = body(mail)[:automail.MAX_OPENING_CHARS]
    receipt = automail.read_receipt(mail, opening)
    if receipt is not None:
        return Verdict(Kind.AUTO_REPLY, receipt.reason, subkind=receipt.subkind)
    if not mail.attaches("text/x-delivery-status"):
        challenge = automail.challenge(mail, opening)
        if challenge is not None:
            return Verdict(Kind.AUTO_REPLY, challenge.reason, subkind=challenge.subkind)
    found = _report(mail)
    if found is not None:
        return found
    text = new_text(body(mail))
    automatic = automail.auto_headers(mail)
    if automatic is not None and one_tap_unsubscribe(mail):
        return Verdict(Kind.UNSUBSCRIBE, f"one-tap unsubscribe {mail.subject[:40]!r} "
                       f"({automatic})")
    listed = automail.mailing_list(mail)
    if listed is not None:
        return Verdict(Kind.UNRELATED, listed)
    auto = automail.auto_reply(mail, text)
    if auto is not None:
        back = return_date(f"{mail.subject}\n{text}", now) \
            if auto.subkind == "out_of_office" else None
        return Verdict(Kind.AUTO_REPLY, auto.reason, subkind=auto.subkind, return_date=back)
    if mail.sender is None:
        return Verdict(Kind.UNRELATED, "no sender address")
    if bounce.from_mail_system(mail):
        return Verdict(Kind.UNRELATED, "notice from a mail system that reports no failure")
    bulk = automail.newsletter(mail, "\n".join(mail.texts("text/plain", "text/html")))
    if bulk is not None:
        return Verdict(Kind.UNRELATED, bulk)
    request = unsubscribe_request(mail)
    if request is not None:
        return Verdict(Kind.UNSUBSCRIBE, request)
    return Verdict(Kind.REPLY, "human reply")


def _report(mail: Mail) -> Verdict | None:
    """A machine's report about a message of ours: complaint, bounce or delivery."""
    found: bounce.Bounce | bounce.Delivered | complaint.Complaint | None = complaint.read(mail)
    subkind = "arf"
    if found is None:
        text = "\n".join(mail.texts("text/plain", "text/html"))
        found = ses.notification(text) if '"' in text else None
        subkind = "ses_complaint"
    if found is None:
        found = bounce.read(mail)
    if isinstance(found, complaint.Complaint):
        return Verdict(Kind.COMPLAINT, found.reason, subkind=subkind, recipient=found.recipient,
                       original_message_id=found.original_message_id)
    if isinstance(found, bounce.Delivered):
        return Verdict(Kind.AUTO_REPLY, found.reason, subkind="delivery_success",
                       original_message_id=found.original_message_id)
    if isinstance(found, bounce.Bounce):
        return Verdict(Kind.BOUNCE, found.reason, bounce=found.severity, cause=found.cause,
                       subkind="delayed" if found.delayed else "failure",
                       recipient=found.recipient,
                       original_message_id=found.original_message_id)
    return None
