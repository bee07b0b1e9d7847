"""Trust proportional to proof (issue 6, RELIABILITY T1-T3): the evidence, the table of
evidence to action, which Authentication-Results header counts, and the decay rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sequencer.core.machine import Inbound
from sequencer.core.trust import (
    NOTHING,
    Action,
    Authentication,
    Proof,
    aligned,
    authentication,
    decayed,
    decide,
    proof,
)

GOOD = ("Authentication-Results: mx.ours.example; spf=pass smtp.mailfrom=x.com;\r\n"
        " dkim=pass header.d=x.com header.s=s1; dmarc=pass (p=reject) header.from=x.com\r\n")


def message(*headers: str) -> bytes:
    return ("".join(headers) + "From: Ann <ann@x.com>\r\nSubject: unsubscribe\r\n\r\n"
            "body\r\n").encode()


def test_a_trusted_servers_header_says_dmarc_passed_for_the_from_domain() -> None:
    auth = authentication(message(GOOD), {"mx.ours.example"})
    assert auth.authserv_id == "mx.ours.example"
    assert auth.vouches_for("x.com") and auth.vouches_for("X.COM")
    assert not auth.vouches_for("y.com")


def test_no_header_is_trusted_unless_the_mailbox_names_its_server() -> None:
    assert authentication(message(GOOD), ()) is NOTHING
    assert authentication(message(GOOD), {"mx.other.example"}) is NOTHING


def test_only_the_topmost_trusted_header_counts_so_a_forged_one_below_it_does_not() -> None:
    real = GOOD.replace("dmarc=pass", "dmarc=fail").replace("dkim=pass", "dkim=fail")
    forged = GOOD  # the sender wrote it into the message, claiming our server's name
    auth = authentication(message(real, "Received: from x by y\r\n", forged),
                          {"mx.ours.example"})
    assert not auth.vouches_for("x.com")


def test_a_garbled_trusted_header_is_no_evidence_and_never_falls_through() -> None:
    garbled = "Authentication-Results: mx.ours.example; dmarc=\r\n"
    assert not authentication(message(garbled, GOOD), {"mx.ours.example"}).vouches_for("x.com")
    assert authentication(b"\xff\xfe not a message", {"mx.ours.example"}) is NOTHING


def test_an_aligned_dkim_pass_vouches_and_an_unaligned_one_does_not() -> None:
    dkim_only = ("Authentication-Results: mx.ours.example; dkim=pass header.d=mail.x.com;"
                 " dkim=pass header.i=@other.example; dmarc=none header.from=x.com\r\n")
    auth = authentication(message(dkim_only), {"mx.ours.example"})
    assert auth.vouches_for("x.com") and auth.vouches_for("eu.mail.x.com")
    assert not auth.vouches_for("y.com")


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("x.com", "x.com", True), ("mail.x.com", "x.com", True), ("x.com", "a.b.x.com", True),
    ("x.com", "evilx.com", False), ("co.uk", "x.co.uk", True), ("com", "x.com", False),
    ("bücher.de", "xn--bcher-kva.de", True), ("x.com", "y.com", False),
])
def test_alignment_is_the_same_domain_or_a_subdomain(a: str, b: str, expected: bool) -> None:
    assert aligned(a, b) is expected


VOUCHED = Authentication("mx.ours.example", frozenset({"x.com", "stranger.example"}))


def test_a_message_quoting_our_message_id_is_proof_whatever_else() -> None:
    for what in Inbound:
        assert proof(what, quotes_ours=True, auth=NOTHING, sender=None, named=None,
                     prospect="ann@x.com", mailed=False) is Proof.MESSAGE_ID


def test_dmarc_proves_an_unsubscribe_only_from_the_prospects_own_address() -> None:
    kw: dict[str, Any] = {"quotes_ours": False, "auth": VOUCHED, "named": None, "mailed": True}
    assert proof(Inbound.UNSUBSCRIBE, sender="ANN@x.com", prospect="ann@X.com",
                 **kw) is Proof.DMARC
    assert proof(Inbound.UNSUBSCRIBE, sender="bob@x.com", prospect="ann@x.com",
                 **kw) is Proof.NONE
    assert proof(Inbound.UNSUBSCRIBE, sender="ann@x.com", prospect="ann@x.com",
                 **{**kw, "auth": NOTHING}) is Proof.NONE


def test_dmarc_proves_a_notice_only_from_the_named_domain_about_an_address_we_mailed() -> None:
    kw: dict[str, Any] = {"quotes_ours": False, "auth": VOUCHED, "prospect": "ann@x.com"}
    daemon = "mailer-daemon@x.com"
    assert proof(Inbound.HARD_BOUNCE, sender=daemon, named="ann@x.com", mailed=True,
                 **kw) is Proof.DMARC
    assert proof(Inbound.HARD_BOUNCE, sender=daemon, named="ann@x.com", mailed=False,
                 **kw) is Proof.NONE, "never mailed from this mailbox"
    assert proof(Inbound.COMPLAINT, sender="abuse@stranger.example", named="ann@x.com",
                 mailed=True, **kw) is Proof.NONE, "a stranger passes DMARC for its own domain"


EVIDENCE_TO_ACTION = [
    # meaning, proof, from the prospect, action, listed for review
    (Inbound.REPLY, Proof.NONE, True, Action.HALT, False),
    (Inbound.REPLY, Proof.MESSAGE_ID, False, Action.HALT, False),
    (Inbound.UNSUBSCRIBE, Proof.NONE, True, Action.HALT, True),
    (Inbound.UNSUBSCRIBE, Proof.MESSAGE_ID, True, Action.SUPPRESS, False),
    (Inbound.UNSUBSCRIBE, Proof.MESSAGE_ID, False, Action.HALT, True),
    (Inbound.UNSUBSCRIBE, Proof.DMARC, True, Action.SUPPRESS, False),
    (Inbound.HARD_BOUNCE, Proof.NONE, False, Action.REVIEW, True),
    (Inbound.HARD_BOUNCE, Proof.MESSAGE_ID, False, Action.SUPPRESS, False),
    (Inbound.HARD_BOUNCE, Proof.DMARC, False, Action.SUPPRESS, False),
    (Inbound.COMPLAINT, Proof.NONE, False, Action.REVIEW, True),
    (Inbound.COMPLAINT, Proof.MESSAGE_ID, False, Action.SUPPRESS, False),
    (Inbound.SOFT_BOUNCE, Proof.NONE, False, Action.REVIEW, True),
    (Inbound.SOFT_BOUNCE, Proof.MESSAGE_ID, False, Action.COUNT, False),
    (Inbound.SOFT_BOUNCE, Proof.DMARC, False, Action.COUNT, False),
    (Inbound.AUTO_REPLY, Proof.NONE, True, Action.DELAY, False),
    (Inbound.DELAYED, Proof.MESSAGE_ID, False, Action.NOTE, False),
]


@pytest.mark.parametrize(("what", "evidence", "mine", "action", "review"), EVIDENCE_TO_ACTION)
def test_the_table_of_evidence_to_action(what: Inbound, evidence: Proof, mine: bool,
                                         action: Action, review: bool) -> None:
    decision = decide(what, evidence, from_prospect=mine)
    assert (decision.action, decision.review, decision.proof) == (action, review, evidence)
    assert decision.why


def test_the_table_covers_every_meaning() -> None:
    assert {row[0] for row in EVIDENCE_TO_ACTION} == set(Inbound)


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def test_decay_n_minus_one_soft_bounces_do_not_suppress_and_the_nth_within_m_days_does() -> None:
    two = [NOW - 10 * DAY, NOW - DAY]
    assert not decayed(two, NOW, count=3, within=14 * DAY)
    assert decayed([*two, NOW], NOW, count=3, within=14 * DAY)


def test_decay_a_bounce_outside_the_window_does_not_count() -> None:
    assert not decayed([NOW - 15 * DAY, NOW - DAY, NOW], NOW, count=3, within=14 * DAY)
    assert decayed([NOW - 14 * DAY, NOW - DAY, NOW], NOW, count=3, within=14 * DAY)
