"""Address identity (RELIABILITY I1, I2, I3): one key per mailbox, whatever the spelling."""

from __future__ import annotations

import pytest
from email_validator import validate_email

from sequencer.core.addresses import (
    AddressError,
    address_key,
    ascii_domain,
    mixed_script,
    sending_address,
    unicode_domain,
)


@pytest.mark.parametrize("spelling", [
    "Ann@X.com", "ann@x.com", "ANN@X.COM", "aNn@x.CoM.", ' "Ann"@x.com ', "ann@X.COM",
])
def test_every_case_spelling_of_one_address_has_one_key(spelling: str) -> None:
    assert address_key(spelling) == "ann@x.com"


@pytest.mark.parametrize("spelling", [
    "bob@bücher.de", "bob@BÜCHER.de", "Bob@xn--bcher-kva.de", "BOB@XN--BCHER-KVA.DE",
    "bob@bu\u0308cher.de",  # decomposed ü (NFD)
])
def test_an_idn_domain_and_its_a_label_are_one_domain(spelling: str) -> None:
    assert address_key(spelling) == "bob@xn--bcher-kva.de"


def test_the_domain_key_is_email_validators_ascii_domain() -> None:
    for domain in ("bücher.de", "faß.de", "münchen.example", "東京.jp", "Example.COM"):
        expected = validate_email(f"a@{domain}", check_deliverability=False).ascii_domain
        assert ascii_domain(domain) == expected.lower()


def test_idna_2008_keeps_eszett_apart_from_ss() -> None:
    assert ascii_domain("faß.de") == "xn--fa-hia.de"
    assert address_key("x@faß.de") != address_key("x@fass.de")
    assert sending_address("Ann@faß.de") == "Ann@xn--fa-hia.de"


def test_the_local_part_is_case_folded_in_unicode_too() -> None:
    assert address_key("ÅSA@x.com") == address_key("åsa@x.com") == "åsa@x.com"
    assert address_key("Stra\u00dfe@x.com") == "strasse@x.com"  # full case folding


def test_dots_and_plus_tags_stay_part_of_the_identity() -> None:
    assert address_key("ann.lee@x.com") != address_key("annlee@x.com")
    assert address_key("ann+crm@x.com") != address_key("ann@x.com")


def test_sending_keeps_the_spelling_and_writes_the_domain_as_its_a_label() -> None:
    assert sending_address("Bob@bücher.de") == "Bob@xn--bcher-kva.de"
    assert sending_address("Ann@X.com") == "Ann@x.com"
    assert unicode_domain("xn--bcher-kva.de") == "bücher.de"


def test_inbound_addresses_email_validator_refuses_still_have_a_key() -> None:
    assert address_key("Ann@LOCALHOST") == "ann@localhost"
    assert address_key("x@bad_domain.example") == "x@bad_domain.example"
    for bad in ("", "ann", "@x.com", "ann@"):
        with pytest.raises(AddressError):
            address_key(bad)
    with pytest.raises(AddressError):
        sending_address("ann@exa mple.com")


def test_a_mixed_script_domain_is_named_and_a_single_script_one_is_not() -> None:
    cyrillic_a = "ann@ex\u0430mple.com"
    assert "Cyrillic and Latin" in (mixed_script(cyrillic_a) or "")
    assert "Cyrillic and Latin" in (mixed_script("ann@xn--exmple-4nf.com") or "")
    assert "Greek and Latin" in (mixed_script("ann@p\u03b1ypal.com") or "")
    for fine in ("bob@bücher.de", "ann@example.com", "ann@пример.рф", "ann@東京タワー.jp",
                 "ann@ソニーsony.jp", "ann@서울seoul.kr"):
        assert mixed_script(fine) is None, fine
    assert mixed_script("not an address") is None
