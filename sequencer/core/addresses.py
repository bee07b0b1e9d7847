"""Address identity: one key per mailbox, whatever the spelling it was written in.

``address_key`` is the only definition of "the same address" in the project. Enrolling,
deduplicating, suppressing, the manual commands, inbound matching and the store's
``email_key`` columns all compare keys; the spelling a CSV gave is kept for display.

The key:
- the domain in lower case, as IDNA 2008 A-labels (email-validator's ``ascii_domain``:
  UTS 46 mapping without the transitional 2003 rules, so ``faß.de`` stays ``xn--fa-hia.de``
  and never becomes ``fass.de``); ``bücher.de`` and ``xn--bcher-kva.de`` are one domain;
- the local part in Unicode NFC and case-folded (``str.casefold``), so ``Ann``, ``ANN`` and
  ``ann`` are one mailbox. RFC 5321 lets a server treat case as significant, but no mail
  system in use does, and two prospects who differ only by case are far rarer than one
  prospect typed two ways. Folding is full Unicode case folding (``ß`` folds to ``ss`` in a
  non-ASCII local part too). Nothing else is folded: dots and ``+tags`` are kept, since
  only some providers ignore them. Unneeded quotes (``"ann"@x.com``) are dropped.

Sending uses ``sending_address``: the spelling as written, with the domain as its A-label,
so an IDN domain never needs SMTPUTF8 (only a non-ASCII local part does).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import idna
from email_validator import EmailNotValidError, validate_email

from sequencer.errors import SequencerError

_PLAIN_DOMAIN = re.compile(r"[A-Za-z0-9.-]+\Z")
_QUOTED_ATOM = re.compile(r'"([A-Za-z0-9!#$%&\'*+/=?^_`{|}~.-]+)"\Z')

#: UTS 39 "highly restrictive": the script mixes allowed inside one domain label.
_ALLOWED_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
_NO_SCRIPT = frozenset({"COMMON", "INHERITED"})


class AddressError(SequencerError, ValueError):
    """Not an address (no local part, no @, no domain) or not a valid domain."""


def address_key(address: str) -> str:
    """The canonical key of ``address``: ``casefold(local)@idna2008(domain).lower()``.

    Total for anything with a local part, an ``@`` and a domain (inbound mail is not always
    valid); raises ``AddressError`` otherwise.
    """
    local, domain = split(address)
    return f"{_local_key(local)}@{domain_key(domain)}"


def split(address: str) -> tuple[str, str]:
    """(local part, domain) at the last ``@``; ``AddressError`` when either is empty."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        raise AddressError(f"not an address: {address!r}")
    return local, domain


def domain_key(domain: str) -> str:
    """The domain as compared: IDNA 2008 A-labels, lower case, no trailing dot. Lenient: a
    domain email-validator refuses is still keyed (UTS 46, or else folded as text)."""
    domain = domain.strip().rstrip(".")
    try:
        return ascii_domain(domain)
    except AddressError:
        pass
    try:
        return idna.encode(domain, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        return unicodedata.normalize("NFC", domain.casefold())


@lru_cache(maxsize=4096)
def ascii_domain(domain: str) -> str:
    """The A-label (ASCII) form of a valid domain, lower case: email-validator's
    ``ascii_domain`` (IDNA 2008 with UTS 46 mapping). ``AddressError`` when not valid."""
    if _PLAIN_DOMAIN.match(domain) and "xn--" not in domain.lower():
        return domain.lower()
    try:
        checked = validate_email(f"a@{domain}", check_deliverability=False,
                                 test_environment=True, globally_deliverable=False)
    except EmailNotValidError as err:
        raise AddressError(f"invalid domain {domain!r}: {err}") from None
    return checked.ascii_domain.lower()


def unicode_domain(domain: str) -> str:
    """The U-label (display) form of a domain; the input when it is not valid IDNA."""
    try:
        return idna.decode(domain_key(domain))
    except (idna.IDNAError, UnicodeError):
        return domain


def sending_address(address: str) -> str:
    """``address`` as written, with its domain as IDNA 2008 A-labels: what goes into the
    SMTP envelope and the To header. ``AddressError`` when the domain is not valid."""
    local, domain = split(address)
    return f"{local}@{ascii_domain(domain)}"


def _local_key(local: str) -> str:
    quoted = _QUOTED_ATOM.match(local)
    if quoted is not None:
        local = quoted.group(1)
    if local.isascii():
        return local.lower()
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", local).casefold())


def mixed_script(address: str) -> str | None:
    """Why the domain of ``address`` looks like a homoglyph of another one, or None.

    A label that mixes scripts (``exаmple`` with a Cyrillic ``а``) beyond the mixes UTS 39
    calls highly restrictive (Latin with Han and Japanese kana, Bopomofo or Hangul) is
    named. Labels are read in their Unicode form, so an A-label (``xn--exmple-4nf``) is
    checked too.
    """
    try:
        _, domain = split(address)
    except AddressError:
        return None
    labels = unicode_domain(domain).split(".")
    if all(label.isascii() for label in labels):
        return None
    from confusable_homoglyphs import categories  # its Unicode data loads on first use

    for label in labels:
        if label.isascii():
            continue
        scripts = {categories.alias(char) for char in label} - _NO_SCRIPT
        if len(scripts) > 1 and not any(scripts <= mix for mix in _ALLOWED_MIXES):
            named = " and ".join(sorted(s.title() for s in scripts))
            return f"the domain label {label!r} mixes {named} letters (a look-alike domain?)"
    return None
