"""Company identity: which organisation an address belongs to, for ``company_reply``.

An address's company is the registrable domain of its domain (the public suffix plus one
label: ``eu.acme.co.uk`` is ``acme.co.uk``), read from the Public Suffix List that the
``publicsuffixlist`` package bundles (no network: the list is a file inside the package,
updated with each release). Private-section suffixes count too, so two shops at
``a.myshopify.com`` and ``b.myshopify.com`` are two companies, not one.

An address has no company when its domain is a free-mail or ISP domain (``freemail.txt``
beside this module, plus the working folder's own ``free_mail:`` entries), when the domain
is itself a public suffix, or when it is not a valid domain. Domains are compared as
``sequencer.core.addresses.domain_key`` writes them: IDNA 2008 A-labels in lower case.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources

from publicsuffixlist import PublicSuffixList

from sequencer.core.addresses import AddressError, domain_key, split

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")


@cache
def _psl() -> PublicSuffixList:
    # The bundled list (accept_unknown: a TLD the list does not know yet, such as a
    # brand-new gTLD or the reserved `.test`, is still a public suffix of one label).
    return PublicSuffixList()


def registrable_domain(domain: str) -> str | None:
    """The registrable domain of ``domain`` (A-labels, lower case), or None when
    ``domain`` is a public suffix itself (``co.uk``, ``github.io``) or no domain at all."""
    key = domain_key(domain)
    if not _HOSTNAME.fullmatch(key) or key.rsplit(".", 1)[-1].isdigit():
        return None  # not a host name: an address literal, an IP address, junk
    found = _psl().privatesuffix(key)
    return found.lower() if found else None


@dataclass(frozen=True)
class FreeMail:
    """The free-mail and ISP domains: exact domains (with everything under them) and
    ``name.*`` patterns (that name directly under any public suffix)."""

    domains: frozenset[str]
    names: frozenset[str]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> FreeMail:
        """Entries as in ``freemail.txt``; ``ValueError`` names the first bad one."""
        domains: set[str] = set()
        names: set[str] = set()
        for raw in entries:
            entry = raw.split("#", 1)[0].strip().lower()
            if not entry:
                continue
            if entry.endswith(".*"):
                name = entry[:-2]
                if not name or "." in name or "*" in name:
                    raise ValueError(f"{raw.strip()!r}: a pattern is one label and .*, "
                                     "such as yahoo.*")
                names.add(domain_key(name))
                continue
            domain = domain_key(entry)
            if "*" in entry or not _HOSTNAME.fullmatch(domain):
                raise ValueError(f"{raw.strip()!r}: write a domain (gmail.com) or a "
                                 "pattern (yahoo.*)")
            domains.add(domain)
        return cls(frozenset(domains), frozenset(names))

    @classmethod
    def bundled(cls) -> FreeMail:
        return _bundled()

    def with_entries(self, entries: Iterable[str]) -> FreeMail:
        extra = FreeMail.parse(entries)
        return FreeMail(self.domains | extra.domains, self.names | extra.names)

    def covers(self, domain: str) -> bool:
        """Whether ``domain`` (or a domain it is under) is free mail."""
        key = domain_key(domain)
        labels = key.split(".")
        for start in range(len(labels) - 1):
            if ".".join(labels[start:]) in self.domains:
                return True
        registrable = registrable_domain(key)
        return registrable is not None and registrable.split(".", 1)[0] in self.names


@cache
def _bundled() -> FreeMail:
    text = resources.files("sequencer.core").joinpath("freemail.txt").read_text("utf-8")
    return FreeMail.parse(text.splitlines())


def company_of(address: str, free_mail: FreeMail | None = None) -> str | None:
    """The company (registrable domain) of ``address``, or None for free mail, a public
    suffix or no valid domain."""
    try:
        _, domain = split(address)
    except AddressError:
        return None
    company = registrable_domain(domain)
    if company is None or (free_mail or FreeMail.bundled()).covers(domain):
        return None
    return company


@cache
def free_mail_with(entries: tuple[str, ...]) -> FreeMail:
    """The bundled free-mail list plus a working folder's own ``free_mail:`` entries."""
    return FreeMail.bundled().with_entries(entries) if entries else FreeMail.bundled()
