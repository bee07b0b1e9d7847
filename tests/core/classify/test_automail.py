"""Automatic mail (K2): out-of-office replies, with and without RFC 3834 headers."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from sequencer.core.classify import Kind, classify
from tests.core.classify.mails import NOW, OWN, mail, read, reply_with

DATA = Path(__file__).resolve().parents[2] / "data"

AUTO_REPLIES = {
    "gmail_vacation.eml": date(2025, 12, 1),
    "outlook_automatic_reply.eml": date(2025, 12, 1),
    "outlook_no_rfc3834.eml": date(2025, 12, 1),
    "exchange_out_of_office.eml": date(2026, 1, 5),
    "german_abwesenheitsnotiz.eml": date(2025, 12, 15),
    "french_reponse_automatique.eml": date(2025, 12, 3),
    "precedence_auto_reply.eml": date(2026, 1, 9),
    "x_autoreply_no_date.eml": None,
}


@pytest.mark.parametrize(("name", "back"), sorted(AUTO_REPLIES.items()))
def test_out_of_office_sample_is_an_auto_reply_with_its_return_date(name, back):
    verdict = classify((DATA / "autoreplies" / name).read_bytes(), own_addresses=OWN, now=NOW)
    assert (verdict.kind, verdict.subkind) == (Kind.AUTO_REPLY, "out_of_office")
    assert verdict.return_date == back


def test_every_auto_reply_sample_is_checked():
    assert {p.name for p in (DATA / "autoreplies").glob("*.eml")} == set(AUTO_REPLIES)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ("Auto-Submitted: auto-replied", "Auto-Submitted: auto-replied"),
        ("X-Autorespond: yes", "X-Autorespond header"),
        ("Precedence: junk", "Precedence: junk"),
        ("Subject: Abwesenheitsnotiz", "out-of-office subject 'Abwesenheitsnotiz'"),
    ],
)
def test_auto_reply_markers(headers, reason):
    verdict = read(mail(f"From: sam@prospect.example\n{headers}", "Away.\n"))
    assert (verdict.kind, verdict.reason) == (Kind.AUTO_REPLY, reason)


@pytest.mark.parametrize(
    "subject", ["Re: Vacation plans", "Re: Out of office next week?", "Re: Away from desk"])
def test_reply_whose_subject_mentions_absence_is_still_a_reply(subject):
    assert reply_with("Let's meet after that.", subject).kind is Kind.REPLY


def test_auto_submitted_no_is_not_an_auto_reply():
    verdict = read(mail("From: sam@prospect.example\nAuto-Submitted: no", "Sure.\n"))
    assert verdict.kind is Kind.REPLY
