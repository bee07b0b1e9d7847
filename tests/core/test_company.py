"""Company identity: registrable domains from the public-suffix list, free-mail domains."""

from __future__ import annotations

from importlib import resources

import pytest

from sequencer.core.company import FreeMail, company_of, free_mail_with, registrable_domain


@pytest.mark.parametrize(("domain", "registrable"), [
    ("acme.com", "acme.com"),
    ("sales.eu.acme.com", "acme.com"),
    ("acme.co.uk", "acme.co.uk"),
    ("eu.acme.co.uk", "acme.co.uk"),
    ("acme.com.au", "acme.com.au"),
    ("ACME.Com.", "acme.com"),
    # the private section counts: two shops on one platform are two companies
    ("shop-a.myshopify.com", "shop-a.myshopify.com"),
    ("team.foo.github.io", "foo.github.io"),
    ("x.foo.s3.amazonaws.com", "foo.s3.amazonaws.com"),
    # IDN: compared as IDNA 2008 A-labels, whichever way they were written
    ("bücher.de", "xn--bcher-kva.de"),
    ("verkauf.xn--bcher-kva.de", "xn--bcher-kva.de"),
    ("faß.de", "xn--fa-hia.de"),  # IDNA 2008: never fass.de
    ("xn--o3cf1ay4bq.xn--12c1fe0br.xn--o3cw4h", "xn--o3cf1ay4bq.xn--12c1fe0br.xn--o3cw4h"),
    # a TLD the list does not know (a new gTLD, the reserved .test) is one label
    ("mail.example.test", "example.test"),
])
def test_the_registrable_domain_is_one_label_under_the_public_suffix(
        domain: str, registrable: str) -> None:
    assert registrable_domain(domain) == registrable


@pytest.mark.parametrize("domain", [
    "com", "co.uk", "github.io", "myshopify.com", "s3.amazonaws.com", "localhost",
    "1.2.3.4", "[192.0.2.1]", "", "..", "-bad-.com",
])
def test_a_public_suffix_an_ip_or_junk_has_no_registrable_domain(domain: str) -> None:
    assert registrable_domain(domain) is None


@pytest.mark.parametrize("address", [
    "ann@gmail.com", "ann@googlemail.com", "ann@GMail.com", "ann@outlook.com",
    "ann@hotmail.com", "ann@hotmail.co.uk", "ann@hotmail.fr", "ann@live.com", "ann@live.de",
    "ann@yahoo.com", "ann@yahoo.co.jp", "ann@yahoo.com.br", "ann@gmx.de", "ann@gmx.net",
    "ann@web.de", "ann@mail.ru", "ann@yandex.ru", "ann@yandex.com", "ann@icloud.com",
    "ann@me.com", "ann@aol.com", "ann@proton.me", "ann@protonmail.com", "ann@qq.com",
    "ann@163.com", "ann@naver.com", "ann@orange.fr", "ann@free.fr", "ann@t-online.de",
    "ann@comcast.net",
    # under a free-mail domain, and an exact entry below a registrable domain
    "ann@mail.yahoo.com", "ann@i.softbank.jp",
])
def test_free_mail_and_isp_addresses_have_no_company(address: str) -> None:
    assert company_of(address) is None


@pytest.mark.parametrize(("address", "company"), [
    ("ann@acme.com", "acme.com"),
    ("Ann.Lee@Sales.ACME.co.uk", "acme.co.uk"),
    ("bob@bücher.de", "xn--bcher-kva.de"),
    # near misses of free-mail names are companies
    ("ann@yahoomail-consulting.com", "yahoomail-consulting.com"),
    ("ann@gmail-partners.com", "gmail-partners.com"),
    ("ann@mygmail.com", "mygmail.com"),
    # a pattern is the name directly under a public suffix, not anywhere in the domain
    ("ann@yahoo.acme.com", "acme.com"),
    # an exact entry covers what is under it, not its parent
    ("ann@softbank.jp", "softbank.jp"),
])
def test_company_addresses_have_their_registrable_domain(address: str, company: str) -> None:
    assert company_of(address) == company


@pytest.mark.parametrize("address", ["not-an-address", "@acme.com", "ann@", "ann@co.uk"])
def test_no_address_or_no_registrable_domain_has_no_company(address: str) -> None:
    assert company_of(address) is None


def test_the_bundled_list_names_the_providers_of_the_brief() -> None:
    free = FreeMail.bundled()
    for domain in ("gmail.com", "googlemail.com", "outlook.com", "web.de", "mail.ru",
                   "icloud.com", "me.com", "aol.com", "proton.me", "protonmail.com",
                   "qq.com", "163.com", "naver.com", "orange.fr", "free.fr", "t-online.de",
                   "comcast.net"):
        assert free.covers(domain), domain
    for name in ("hotmail", "live", "yahoo", "gmx", "yandex"):
        assert name in free.names, name


def test_every_line_of_the_data_file_is_a_domain_a_pattern_or_a_comment() -> None:
    text = resources.files("sequencer.core").joinpath("freemail.txt").read_text("utf-8")
    entries = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert len(entries) > 150
    parsed = FreeMail.parse(entries)
    assert len(parsed.domains) + len(parsed.names) == len(set(entries))
    for entry in entries:  # each entry is used: none is a public suffix nobody can have
        domain = entry.replace("*", "com")
        assert registrable_domain(domain) is not None, entry


@pytest.mark.parametrize(("entry", "reason"), [
    ("*.yahoo.com", "write a domain"),
    ("-bad-.com", "write a domain"),
    ("mail.yahoo.*", "a pattern is one label"),
    ("ann@gmail.com", "write a domain"),
    ("localhost", "write a domain"),
])
def test_a_bad_entry_is_refused_with_the_entry(entry: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as err:
        FreeMail.parse([entry])
    assert entry in str(err.value)


def test_a_working_folders_entries_extend_the_bundled_list() -> None:
    extra = free_mail_with(("kabelmail.example", "regionet.*"))
    assert company_of("ann@kabelmail.example") == "kabelmail.example"
    assert company_of("ann@kabelmail.example", extra) is None
    assert company_of("ann@regionet.de", extra) is None
    assert company_of("ann@regionet.co.uk", extra) is None
    assert company_of("ann@gmail.com", extra) is None  # the bundled list still applies
    assert company_of("ann@acme.com", extra) == "acme.com"
    assert free_mail_with(()) is FreeMail.bundled()
