"""Trust proportional to proof: what an inbound message may change, given what it proves.

Pure: no I/O, no clock. A *halt* only stops mail to one enrollment, so it is cheap and safe;
a *suppression* is permanent and spans every sequence, so it needs proof that the message
comes from where it says:

- ``message-id``: it quotes one of our Message-IDs (a reply's In-Reply-To/References, a
  DSN's original message, an ARF report's original headers). Our Message-IDs are random
  (``uuid4``): only someone who received that message knows one;
- ``dmarc``: the user's own receiving server wrote, in its ``Authentication-Results``
  header, that DMARC (or a DKIM signature aligned with the From domain) passed for the From
  domain. Only a header whose authserv-id the mailbox's settings name is read, and only
  the topmost such header: anyone can write any Authentication-Results into their message
  (RFC 8601 section 5), and a conforming receiving server adds its own above the ones it
  received (and removes copies that claim its name).

``decide`` is the table of evidence to action; ``docs/trust.md`` shows it to users.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import compat32
from enum import StrEnum

from sequencer.core.addresses import AddressError, address_key, domain_key, split
from sequencer.core.machine import Inbound

MAX_HEADER_BLOCK = 256 * 1024
MAX_RESULTS_CHARS = 8_000
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


class Proof(StrEnum):
    MESSAGE_ID = "message-id"
    DMARC = "dmarc"
    NONE = "none"


class Action(StrEnum):
    HALT = "halt"  # this enrollment stops; nothing else changes
    SUPPRESS = "suppress"  # the address is never mailed again, in any sequence
    COUNT = "count"  # a proven soft bounce: it counts toward the decay rule
    REVIEW = "review"  # nothing changes: recorded, and shown by `status` for a human
    DELAY = "delay"  # an auto-reply: a return date may push the next step, nothing else
    NOTE = "note"  # recorded, changes nothing (a delay warning: nothing failed yet)


@dataclass(frozen=True)
class Decision:
    action: Action
    proof: Proof
    review: bool  # also listed for review (nothing proven, or not the prospect's own words)
    why: str


@dataclass(frozen=True)
class Authentication:
    """What the trusted receiving server's Authentication-Results header says."""

    authserv_id: str | None = None
    dmarc_pass: frozenset[str] = frozenset()  # header.from domains (keys) with dmarc=pass
    dkim_pass: frozenset[str] = frozenset()  # signing domains (keys) with dkim=pass

    def vouches_for(self, domain: str) -> bool:
        """DMARC passed for ``domain``, or a DKIM signature aligned with it did."""
        key = domain_key(domain)
        return key in self.dmarc_pass or any(aligned(key, d) for d in self.dkim_pass)


NOTHING = Authentication()


def aligned(a: str, b: str) -> bool:
    """Relaxed alignment without the public suffix list, erring towards "no": one domain is
    the other or a subdomain of it, and the shorter has at least two labels. (Whoever signs
    as ``x.com`` controls ``x.com``'s DNS, so ``mail.x.com`` and ``x.com`` are one owner;
    a two-label public suffix such as ``co.uk`` cannot sign.)"""
    a, b = domain_key(a), domain_key(b)
    if a == b:
        return True
    short, long = sorted((a, b), key=len)
    return short.count(".") >= 1 and long.endswith("." + short)


def authentication(raw: bytes, trusted: Iterable[str]) -> Authentication:
    """Read the topmost Authentication-Results header whose authserv-id is in ``trusted``
    (case-insensitive); ``NOTHING`` when there is none, none is trusted, or it is garbled."""
    wanted = {t.strip().lower() for t in trusted if t.strip()}
    if not wanted:
        return NOTHING
    head = raw[:MAX_HEADER_BLOCK]
    blank = _BLANK_LINE.search(head)
    if blank is not None:
        head = head[:blank.start()]
    try:
        msg = BytesHeaderParser(policy=compat32).parsebytes(head + b"\r\n\r\n")
        values = [str(v) for v in msg.get_all("Authentication-Results") or ()]
    except Exception:  # noqa: BLE001 - unreadable headers are simply not evidence
        return NOTHING
    for value in values:
        if _authserv_id(value) in wanted:
            # the topmost one decides, even when it is garbled: never fall through to a
            # header further down, which anyone could have written
            return _parse(value) or NOTHING
    return NOTHING


def _authserv_id(value: str) -> str:
    """The first token of the header value (``mx.example.com`` of ``mx.example.com 1; …``),
    comments aside."""
    text = re.sub(r"\([^()]*\)", " ", value.split(";", 1)[0]).split()
    return text[0].lower() if text else ""


def _parse(value: str) -> Authentication | None:
    import authres  # the reference RFC 8601 parser (its author wrote dkimpy)

    text = re.sub(r"\s+", " ", value.replace("\r", " ").replace("\n", " "))[:MAX_RESULTS_CHARS]
    try:
        header = authres.AuthenticationResultsHeader.parse_value(text)
    except Exception:  # noqa: BLE001 - any garbled header is simply not evidence
        return None
    dmarc: set[str] = set()
    dkim: set[str] = set()
    for result in header.results:
        if str(result.result).lower() != "pass":
            continue
        props = {(str(p.type).lower(), str(p.name).lower()): str(p.value)
                 for p in result.properties}
        method = str(result.method).lower()
        if method == "dmarc" and (domain := props.get(("header", "from"))):
            dmarc.add(domain_key(domain))
        elif method == "dkim":
            signer = props.get(("header", "d")) or props.get(("header", "i"), "").rpartition("@")[2]
            if signer:
                dkim.add(domain_key(signer))
    return Authentication(str(header.authserv_id or "") or None, frozenset(dmarc),
                          frozenset(dkim))


def _domain(address: str | None) -> str | None:
    if not address:
        return None
    try:
        return split(address)[1]
    except AddressError:
        return None


def _same(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    try:
        return address_key(a) == address_key(b)
    except AddressError:
        return False


_NOTICES = frozenset({Inbound.HARD_BOUNCE, Inbound.SOFT_BOUNCE, Inbound.COMPLAINT})


def proof(meaning: Inbound, *, quotes_ours: bool, auth: Authentication, sender: str | None,
          named: str | None, prospect: str, mailed: bool) -> Proof:
    """What the message proves about the prospect at ``prospect``.

    ``quotes_ours``: it was matched by one of our Message-IDs. ``sender``: its From address;
    ``named``: the address a bounce or complaint names; ``mailed``: this mailbox has mailed
    the prospect. A notice (bounce, complaint) proven by DMARC must come from a domain
    aligned with the address it names, about an address this mailbox mailed: anyone can
    pass DMARC for their own domain. A reply or unsubscribe proven by DMARC must come from
    the prospect's own address.
    """
    if quotes_ours:
        return Proof.MESSAGE_ID
    from_domain = _domain(sender)
    if from_domain is None or not auth.vouches_for(from_domain):
        return Proof.NONE
    if meaning in _NOTICES:
        about = _domain(named)
        if about is not None and mailed and _same(named, prospect) \
                and aligned(from_domain, about):
            return Proof.DMARC
        return Proof.NONE
    return Proof.DMARC if _same(sender, prospect) else Proof.NONE


_UNPROVEN = "no Message-ID of ours and no DMARC pass from a trusted Authentication-Results"


def decide(meaning: Inbound, evidence: Proof, *, from_prospect: bool) -> Decision:
    """The table of evidence to action (``docs/trust.md``).

    ``from_prospect``: the message's From is the prospect's own address (an unsubscribe on
    the prospect's thread from a colleague halts the thread but suppresses nobody).
    """
    proven = evidence is not Proof.NONE
    if meaning is Inbound.REPLY:
        return Decision(Action.HALT, evidence, False, "a reply halts, whoever sent it")
    if meaning is Inbound.UNSUBSCRIBE:
        if proven and from_prospect:
            return Decision(Action.SUPPRESS, evidence, False, f"proven by {evidence.value}")
        if proven:
            return Decision(Action.HALT, evidence, True,
                            "the unsubscribe on this thread is not from the prospect's address")
        return Decision(Action.HALT, evidence, True, _UNPROVEN)
    if meaning in (Inbound.HARD_BOUNCE, Inbound.COMPLAINT):
        if proven:
            return Decision(Action.SUPPRESS, evidence, False, f"proven by {evidence.value}")
        return Decision(Action.REVIEW, evidence, True, _UNPROVEN)
    if meaning is Inbound.SOFT_BOUNCE:
        if proven:
            return Decision(Action.COUNT, evidence, False, f"proven by {evidence.value}")
        return Decision(Action.REVIEW, evidence, True, _UNPROVEN)
    if meaning is Inbound.DELAYED:
        return Decision(Action.NOTE, evidence, False, "a delay warning changes nothing")
    return Decision(Action.DELAY, evidence, False, "an auto-reply only delays")


def decayed(bounces: Sequence[datetime], now: datetime, *, count: int,
            within: timedelta) -> bool:
    """The decay rule: ``count`` proven soft bounces (distinct sends) in the ``within``
    before ``now`` suppress the address; older ones have decayed."""
    return sum(1 for at in bounces if now - within <= at <= now) >= count
